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

from transferd.client import Client, Example, JobStatus, TransferdError

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


def show(status: JobStatus) -> None:
    print(f"  JOB_STATE_{status.state:10s} {status.stage:12s} {status.progress:5.0%}")


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

    # 1. The operator (admin key) creates a tenant and an API key for it.
    with Client(args.address, api_key=admin_key) as admin:
        try:
            admin.create_tenant(args.tenant)
        except TransferdError as error:
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        key = admin.create_api_key(args.tenant)
    print(f"tenant {key.tenant}: API key {key.key_id} (the secret is shown only once)")

    with Client(args.address, api_key=key.secret) as client:
        # 2. The tenant trains a head with its own key: TrainHead answers at once with a job.
        examples = [
            Example(text=text, label=label) for label, texts in EXAMPLES.items() for text in texts
        ]
        job = client.train_head(args.head, examples, backbone="all-minilm-l6-v2")
        print(f"job {job.job_id}: JOB_STATE_{job.status.state}")

        # 3. Watch it: one update per stage and progress step, until it ends.
        final = job.wait(on_progress=show)
        if final.state != "SUCCEEDED":
            sys.exit(f"training failed: {final.error}")
        print(
            f"head {final.head} v{final.version}: validation accuracy {final.metrics['accuracy']:.2f}"
        )

        # 4. Predict with it.
        predictions = client.predict(args.head, texts=QUESTIONS, top_k=2)
        for question, prediction in zip(QUESTIONS, predictions, strict=True):
            scores = ", ".join(f"{label} {score:.2f}" for label, score in prediction.scores.items())
            print(f"{question!r} -> {prediction.label} ({scores})")


if __name__ == "__main__":
    main()
