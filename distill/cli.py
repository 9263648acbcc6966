"""The ``distill`` command line: run, validate, show.

Exit codes: 0 success, 2 bad input (config, paths, arguments), 1 a stage failed.
Errors are one line, never a traceback; the traceback goes to the run's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from distill.errors import StageError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its one-line form
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from distill.config import STAGES

    parser = _Parser(prog="distill", description="Distil a reasoning teacher into small students.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to the terminal too")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the pipeline for a config (skips stages that are up to date)")
    run.add_argument("config", help="path to the run's YAML config")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set teacher.temperature=0.7 (repeatable)")
    run.add_argument("--until", metavar="STAGE", help=f"stop after this stage ({', '.join(STAGES)})")
    run.add_argument("--force", action="append", default=[], metavar="STAGE",
                     help="re-run this stage and every stage after it (repeatable)")

    val = sub.add_parser("validate", help="check a config without running anything")
    val.add_argument("config")
    val.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    chk = sub.add_parser("check-template", help="render one example as the trainer will and check which "
                                                "tokens carry loss (exit 2 if the template would train wrongly)")
    chk.add_argument("config")
    chk.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    chk.add_argument("--tokenizer", metavar="PATH", help="check this tokenizer folder instead of student.model's")

    plan = sub.add_parser("plan", help="per-GPU memory, GPU count, GPU-hours and cost of a config's student "
                                       "training and teacher sampling (arithmetic only, nothing is loaded)")
    plan.add_argument("config")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")

    show = sub.add_parser("show", help="summarise a run folder")
    show.add_argument("run_dir")
    show.add_argument("--json", action="store_true", help="print the report as JSON")

    gc = sub.add_parser("gc", help="list, then delete, the stage versions of a run folder no stage uses (never "
                                   "the trace store)")
    gc.add_argument("run_dir", help="a run folder")
    gc.add_argument("--yes", action="store_true", help="delete without asking")

    rep = sub.add_parser("report", help="write report.html and report.md (charts, eval table) for a run folder")
    rep.add_argument("run_dir")
    rep.add_argument("--out", metavar="DIR", help="folder to write the report into (default: RUN_DIR/report)")

    teacher = sub.add_parser("teacher", help="teacher jobs: sample a share of the chunks, serve the teacher")
    tsub = teacher.add_subparsers(dest="teacher_command", required=True, parser_class=_Parser)
    tsam = tsub.add_parser("sample", help="sample the teacher traces of a config's run (all chunks, or one "
                                          "array task's share with --shard K/N); `distill run` continues after")
    tsam.add_argument("config")
    tsam.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tsam.add_argument("--shard", metavar="K/N", default="0/1",
                      help="sample only chunks i with i %% N == K (a Slurm array task: K = $SLURM_ARRAY_TASK_ID - "
                           "$SLURM_ARRAY_TASK_MIN, N = $SLURM_ARRAY_TASK_COUNT, as "
                           "configs/launchers/slurm-sample-array.sbatch passes them)")
    tsrv = tsub.add_parser("serve", help="start the teacher's OpenAI-compatible server (vLLM or SGLang) as the "
                                         "config says; Ctrl-C stops it and its workers")
    tsrv.add_argument("config")
    tsrv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    tsrv.add_argument("--dry-run", action="store_true", help="print the server command line (as a GPU node runs "
                                                            "it; credential values such as --api-key's shown as "
                                                            "***) and exit")
    _add_rehearse_parser(sub, STAGES)
    return parser


def _add_rehearse_parser(sub: Any, stages: Sequence[str]) -> None:
    reh = sub.add_parser("rehearse", help="run the config's real code paths on this CPU in minutes: tiny random-"
                                          "weight models of the real architectures, GPU settings checked at full "
                                          "scale then replaced (each listed); exit 1 when a stage would fail")
    reh.add_argument("config")
    reh.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    reh.add_argument("--until", metavar="STAGE", help=f"stop after this stage ({', '.join(stages)})")
    reh.add_argument("--workdir", metavar="DIR", help="where the rehearsal writes (default rehearsals/<name>; "
                                                      "never a real run folder)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    console = Console(stderr=False)
    errors = Console(stderr=True)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"validate": _validate, "show": _show, "gc": _gc, "check-template": _check_template, "plan": _plan,
                    "report": _report, "teacher": _teacher, "rehearse": _rehearse}
        return commands.get(args.command, _run)(args, console)
    except UserError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        return EXIT_USAGE
    except StageError as exc:
        errors.print(f"[bold red]error:[/] stage {exc.stage} failed: {exc} (run folder {exc.run_dir}, "
                     f"log {exc.log})", highlight=False, soft_wrap=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        errors.print("interrupted; run the same command again to resume", highlight=False)
        return 130


def _validate(args: argparse.Namespace, console) -> int:
    from distill.config import load_config

    config = load_config(args.config, args.overrides)
    from distill.runner import check_all

    # every stage's static checks and the files the config names (light: no torch, no datasets); what is not
    # on this machine (a recipe's data/ prepared on the cluster) is listed, and `distill run` refuses it
    from distill.scale_checks import scale_errors

    full_scale = scale_errors(config)  # `distill run` stops at the first; validate lists every one
    try:
        missing = check_all(config, missing_ok=True)
    except UserError as exc:
        if not full_scale:
            raise
        from rich.console import Console

        lines = ([] if str(exc).startswith(full_scale[0]) else [str(exc)]) + full_scale
        for line in lines:
            Console(stderr=True).print(f"[bold red]error:[/] {line}", highlight=False, markup=True, soft_wrap=True)
        return EXIT_USAGE
    console.print(f"{args.config}: ok (run folder {config.run_dir})", highlight=False)
    for line in missing:
        console.print(f"not here (`distill run` needs it): {line}", highlight=False, markup=False, soft_wrap=True)
    return EXIT_OK


def _check_template(args: argparse.Namespace, console) -> int:
    from distill.config import load_config

    config = load_config(args.config, args.overrides)
    _quiet_libraries()
    from distill.students.preflight import check_config

    report = check_config(config, args.tokenizer)
    console.print(report.render(), highlight=False, markup=False, soft_wrap=True)
    if not report.ok:
        raise UserError(f"chat-template pre-flight failed: {report.reason}")
    return EXIT_OK


def _plan(args: argparse.Namespace, console) -> int:
    from distill.config import load_config
    from distill.students.plan import plan_run

    result = plan_run(load_config(args.config, args.overrides))
    if args.json:
        console.print_json(json.dumps(result.to_dict()))
    else:
        console.print(result.render(), highlight=False, markup=False, soft_wrap=True, end="")
    return EXIT_OK


def _run(args: argparse.Namespace, console) -> int:
    from distill.config import load_config

    config = load_config(args.config, args.overrides)
    _quiet_libraries()
    from distill.pipeline import run

    from distill.ui import RichReporter

    with RichReporter(console) as reporter:
        report = run(config, until=args.until, force=args.force, reporter=reporter)
    print_report(report, console)
    return EXIT_OK


def _show(args: argparse.Namespace, console) -> int:
    from distill.store import RunStore

    run_dir = Path(args.run_dir)
    store = RunStore.open_existing(run_dir)
    report_path = run_dir / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    else:
        report = {"name": run_dir.name, "run_dir": str(run_dir), "stages": store.manifest.get("stages", {})}
    if args.json:
        console.print_json(json.dumps(report))
    else:
        print_report(report, console)
    return EXIT_OK


def _gc(args: argparse.Namespace, console) -> int:
    """Unused stage versions: listed with their sizes, deleted after a yes (``--yes``, or typed at a terminal)."""
    from distill.run_gc import remove, unused_versions
    from distill.run_lock import run_lock

    with run_lock(Path(args.run_dir), exclusive=True):  # never while a run uses the folder
        unused = unused_versions(Path(args.run_dir))
        if not unused:
            console.print(f"{args.run_dir}: nothing to remove", highlight=False)
            return EXIT_OK
        for item in unused:
            console.print(f"  {item.stage:<7} {item.folder}  {item.size_bytes / 1e6:,.1f} MB", highlight=False)
        total = sum(item.size_bytes for item in unused) / 1e6
        if not args.yes:
            if not sys.stdin.isatty():
                raise UserError(f"gc: {len(unused)} unused stage version(s), {total:,.1f} MB; "
                                "run again with --yes to delete them")
            if input(f"delete these {len(unused)} folder(s), {total:,.1f} MB? [y/N] ").strip().lower() != "y":
                console.print("nothing deleted", highlight=False)
                return EXIT_OK
        freed = remove(unused)
    console.print(f"deleted {len(unused)} unused stage version(s), {freed / 1e6:,.1f} MB", highlight=False)
    return EXIT_OK


def _report(args: argparse.Namespace, console) -> int:
    from distill.publish.report import write_report

    files = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    console.print(f"wrote {files.html} and {files.markdown} ({len(files.images)} charts)", highlight=False,
                  soft_wrap=True)
    return EXIT_OK


def _teacher(args: argparse.Namespace, console) -> int:
    from distill.config import load_config

    config = load_config(args.config, args.overrides)
    if args.teacher_command == "serve":
        return _serve(config, args.dry_run, console)
    index, count = _parse_shard(args.shard)
    _quiet_libraries()
    from distill.pipeline import sample_partition
    from distill.ui import RichReporter

    with RichReporter(console) as reporter:
        info = sample_partition(config, index, count, reporter)
    if info.get("already_done"):
        console.print(f"shard {index}/{count}: the sample stage of {config.run_dir} is already done", highlight=False,
                      soft_wrap=True)
    else:
        console.print(f"shard {index}/{count}: sampled {info.get('sampled_traces', 0)} trace(s), reused "
                      f"{info.get('reused_traces', 0)}, in {info.get('store')}", highlight=False, soft_wrap=True)
    return EXIT_OK


def _rehearse(args: argparse.Namespace, console) -> int:
    """The rehearsal table; exit 1 when a stage failed or would fail at full scale."""
    _quiet_libraries()
    # vLLM logs to stdout on its own handler, dozens of CPU-backend lines per engine, around the table
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    from rich.console import Console

    from distill.rehearse import TABLE_WIDTH, all_ok, rehearsal_table, rehearse

    rows = rehearse(args.config, until=args.until, workdir=args.workdir, overrides=args.overrides)
    # a pipe or a log gets 80 columns, too narrow for the substitutions; the width must be the Console's
    # (print(width=...) is capped at the console's own width)
    wide = Console(file=sys.stdout, width=max(console.width, TABLE_WIDTH), highlight=False)
    wide.print(rehearsal_table(rows, title=f"rehearsal of {args.config}"))
    failed = [row.stage for row in rows if not row.ok]
    console.print(f"{args.config}: " + (f"would fail at {', '.join(failed)}" if failed else "every stage rehearsed ok"),
                  highlight=False, soft_wrap=True)
    return EXIT_OK if all_ok(rows) else EXIT_FAILED


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r}: expected K/N, e.g. 0/8") from None
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--shard {text!r}: need 0 <= K < N")
    return index, count


def _serve(config, dry_run: bool, console) -> int:
    from distill.teachers.serve import run_server, server_command, server_env, shown_command

    teacher = config.teacher
    if teacher.kind != "model":
        raise UserError("teacher serve: teacher.kind is 'dataset'; there is no model to serve")
    if dry_run:
        model = teacher.model if teacher.model != "toy" else "<toy teacher folder, trained on first use>"
        # as a GPU node runs it (a login node without GPUs would otherwise get the CPU form)
        console.print(shown_command(server_command(teacher, model, launcher="cli", cpu=False)), highlight=False,
                      markup=False, soft_wrap=True)
        return EXIT_OK
    _quiet_libraries()
    from distill.teachers.models import teacher_model

    cmd = server_command(teacher, teacher_model(config))
    console.print(f"starting: {shown_command(cmd)}", highlight=False, markup=False, soft_wrap=True)
    code = run_server(cmd, server_env())
    return EXIT_OK if code == 0 else EXIT_FAILED


def print_report(report: dict[str, Any], console) -> None:
    from rich.table import Table

    stages = Table(title=f"run {report.get('name')} ({report.get('run_dir')})", title_justify="left")
    for col in ("stage", "status", "seconds", "summary"):
        stages.add_column(col)
    for name, e in report.get("stages", {}).items():
        secs = e.get("seconds")
        stages.add_row(name, str(e.get("status")), f"{secs:.1f}" if isinstance(secs, (int, float)) else "",
                       str(e.get("summary") or ""))
    console.print(stages)
    if "funnel" in report:
        console.print("filter funnel: " + ", ".join(f"{k} {v}" for k, v in report["funnel"].items()),
                      highlight=False)
    if "eval" in report:
        table = Table(title="pass@1 on held-out problems (mean over k samples, 95% CI)", title_justify="left")
        for col in ("model", "pass@1", "95% CI", "cons@k", "problems x k", "truncated"):
            table.add_column(col)
        for model, r in report["eval"].items():
            table.add_row(model, f"{100 * r['pass_at_1']:.1f}", f"{100 * r['ci95_low']:.1f}-{100 * r['ci95_high']:.1f}",
                          f"{100 * r['cons_at_k']:.1f}", f"{r['problems']} x {r['samples'] // max(1, r['problems'])}",
                          str(r["truncated"]))
        console.print(table)


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, advisory warnings) out of the terminal; it goes to the log."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from datasets.utils import logging as ds_logging

        ds_logging.disable_progress_bar()
        ds_logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
