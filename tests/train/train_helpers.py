"""Shared test data for training tests."""

from __future__ import annotations

TEXTS = [
    "The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs springt.",
    "Le renard brun rapide saute.", "El rápido zorro marrón salta sobre el perro perezoso.",
    "how much protein should a female eat", "敏捷的棕色狐狸跳过了懒狗。", "Быстрая коричневая лиса.",
    "a lazy dog", "protein for women", "le chien paresseux", "der faule Hund", "el perro",
]

