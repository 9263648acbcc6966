"""The filter stage: keeps only verified-correct, complete, clean traces, each rejection counted by reason.

``verify`` (math-verify, multiple choice, code in ``sandbox``) is also the eval stage's verifier;
it is the one entry point over ``answers`` (reading answers), ``math_fast`` (the in-process fast
path), ``math_check``/``math_worker`` (math-verify in killable worker processes) and ``code_check``.
``sandbox`` runs code in bubblewrap over ``code_tests`` (test specs and output comparison),
``sandbox_process`` (launching), ``sandbox_outcome`` (classifying) and ``sandbox_cgroup``.
``quality`` measures traces, ``dedup`` screens problems, ``judge`` decides what rules cannot,
``traces`` applies them in order and ``funnel`` reports the counts.
"""
