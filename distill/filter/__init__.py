"""The filter stage: keeps only verified-correct, complete, clean traces, each rejection counted by reason.

``verify`` (math-verify, multiple choice, code in ``sandbox``) is also the eval stage's verifier;
``quality`` measures traces, ``dedup`` screens problems, ``judge`` decides what rules cannot,
``traces`` applies them in order and ``funnel`` reports the counts.
"""
