"""Real sentences of varied length that every text export is verified on.

Short and long, plain and technical, punctuation, digits, non-ASCII, and one text beyond every
default text backbone's limit (MiniLM 256 tokens, MPNet 384) so that truncation is verified too.
"""

from __future__ import annotations

VERIFICATION_SENTENCES: tuple[str, ...] = (
    "Hi.",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street corner.",
    "The quarterly revenue grew by 12% compared with the same period last year.",
    "Please reset my password; I can no longer log in to my account.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Café, naïve, résumé: accented words still need sensible embeddings.",
    "Is there a direct train from Zurich to Milan on Sunday mornings?",
    "The court ruled that the contract was void because one party had been misled.",
    "def add(a, b): return a + b  # a tiny Python function",
    "Heavy rain is expected across the north-west, with local flooding possible overnight.",
    "Gradient descent updates each parameter in the direction that most reduces the loss, "
    "scaled by a learning rate that is usually decayed over the course of training.",
    "After three weeks of negotiations, the union and the company agreed on a new contract that "
    "raises wages, shortens the working week and adds two days of paid leave for every employee.",
    "I ordered the blue jacket in size medium, but the parcel contained a red one in size large, "
    "and the returns page keeps showing an error when I try to print the label.",
    "The patient presented with a persistent dry cough, mild fever and fatigue lasting ten days.",
    "Stars form inside dense clouds of gas and dust that collapse under their own gravity.",
    "Tokyo, New York and London remain the three largest financial centres in the world.",
    " ".join(
        [
            "The history of the printing press begins long before Gutenberg, with woodblock "
            "printing in East Asia and movable type made of clay and later metal; yet the "
            "combination of a screw press, oil-based ink and a hand mould for casting type "
            "transformed the economics of books in fifteenth-century Europe, spreading literacy, "
            "standardising languages and accelerating the exchange of scientific ideas."
        ]
        * 6
    ),
)
