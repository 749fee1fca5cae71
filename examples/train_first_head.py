"""Train your first head: create a tenant and a key, train a classifier, watch it, predict.

Run it against a server started with an admin key, e.g. in one terminal
    TRANSFERD_ADMIN_KEY=change-me make serve
and in another
    TRANSFERD_ADMIN_KEY=change-me .venv/bin/python examples/train_first_head.py
"""

from __future__ import annotations

import argparse
import os
import sys

import grpc

from transferd.v1 import common_pb2, heads_pb2, heads_pb2_grpc, tenants_pb2, tenants_pb2_grpc


def bearer(secret: str) -> tuple[tuple[str, str], ...]:
    """The metadata that authenticates a call: every RPC carries its API key this way."""
    return (("authorization", f"Bearer {secret}"),)


# A few labelled examples per label is enough: the backbone already knows what sentences mean.
EXAMPLES = {
    "billing": [
        "I was charged twice for my subscription this month.",
        "How do I update the credit card on my account?",
        "Please send me an invoice for last quarter.",
        "Why did my bill go up without notice?",
        "Can I get a refund for the unused months?",
        "The payment failed but the money left my bank account.",
    ],
    "technical": [
        "The app crashes every time I open the settings page.",
        "I cannot log in since the last update.",
        "Uploads stop at 99 percent and never finish.",
        "The website shows a blank page in my browser.",
        "Notifications stopped working on my phone.",
        "Sync between my laptop and tablet is broken.",
    ],
    "shipping": [
        "My parcel has not arrived after two weeks.",
        "Can you deliver to a pickup point instead of my home?",
        "The tracking number says the label was created but nothing since.",
        "The box arrived damaged and the item is broken.",
        "Do you ship to Canada and how long does it take?",
        "I need to change the delivery address of my order.",
    ],
}
QUESTIONS = [
    "You took the money from my card two times.",
    "The program freezes when I click save.",
    "Where is my package? It was due on Monday.",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default="localhost:50051")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--head", default="support-topics")
    args = parser.parse_args()
    admin_key = os.environ.get("TRANSFERD_ADMIN_KEY")
    if not admin_key:
        sys.exit("set TRANSFERD_ADMIN_KEY to the server's admin key")

    with grpc.insecure_channel(args.address) as channel:
        # 1. The operator (admin key) creates a tenant and an API key for it.
        tenants = tenants_pb2_grpc.TenantServiceStub(channel)
        try:
            tenants.CreateTenant(
                tenants_pb2.CreateTenantRequest(tenant=args.tenant), metadata=bearer(admin_key)
            )
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
        key = tenants.CreateApiKey(
            tenants_pb2.CreateApiKeyRequest(tenant=args.tenant), metadata=bearer(admin_key)
        )
        print(f"tenant {key.tenant}: API key {key.key_id} (the secret is shown only once)")

        # 2. The tenant trains a head with its own key: TrainHead answers at once with a job.
        heads = heads_pb2_grpc.HeadServiceStub(channel)
        tenant = bearer(key.secret)
        request = heads_pb2.TrainHeadRequest(
            head=args.head,
            backbone="all-minilm-l6-v2",
            examples=[
                heads_pb2.Example(input=common_pb2.Input(text=text), label=label)
                for label, texts in EXAMPLES.items()
                for text in texts
            ],
        )
        job = heads.TrainHead(request, metadata=tenant)
        print(f"job {job.job_id}: {heads_pb2.JobState.Name(job.state)}")

        # 3. Watch it: one update per stage and progress step, until it ends.
        for update in heads.WatchJob(heads_pb2.WatchJobRequest(job_id=job.job_id), metadata=tenant):
            print(
                f"  {heads_pb2.JobState.Name(update.state):20s} {update.stage:12s} {update.progress:5.0%}"
            )
        if update.state != heads_pb2.JOB_STATE_SUCCEEDED:
            sys.exit(f"training failed: {update.error}")
        print(
            f"head {update.head} v{update.version}: validation accuracy {update.metrics['accuracy']:.2f}"
        )

        # 4. Predict with it.
        reply = heads.Predict(
            heads_pb2.PredictRequest(
                head=args.head, top_k=2, inputs=[common_pb2.Input(text=q) for q in QUESTIONS]
            ),
            metadata=tenant,
        )
        for question, prediction in zip(QUESTIONS, reply.predictions, strict=True):
            scores = ", ".join(f"{s.label} {s.score:.2f}" for s in prediction.scores)
            print(f"{question!r} -> {prediction.label} ({scores})")


if __name__ == "__main__":
    main()
