"""The accelerate-launchable train entry point's guards (in process, nothing trained): bad ``--settings``
is a one-line error with exit code 2."""

from __future__ import annotations

import json


def test_unknown_settings_field_is_a_one_line_error_with_exit_code_2(tmp_path, caplog):
    from students.train_entry import main

    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"prompt": [{"role": "user", "content": "1+1"}],
                                    "completion": [{"role": "assistant", "content": "2"}]}) + "\n")
    common = ["--examples", str(examples), "--base", str(tmp_path / "never-read"), "--output", str(tmp_path / "o")]
    assert main([*common, "--settings", '{"max_steps": 2, "bogus": 1}']) == 2
    assert "--settings: unknown field(s) bogus" in caplog.text
    assert main([*common, "--settings", "{not json"]) == 2
    assert "--settings: not valid JSON" in caplog.text
