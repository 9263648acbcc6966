"""Prompts for teachers; the builder lives in :mod:`distill.problems` so training and eval share it."""

from distill.problems import CHOICE_INSTRUCTION, CODE_INSTRUCTION, MATH_INSTRUCTION, build_prompt

__all__ = ["build_prompt", "MATH_INSTRUCTION", "CHOICE_INSTRUCTION", "CODE_INSTRUCTION"]
