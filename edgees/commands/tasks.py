"""`edgees tasks ls [--json]` lists the task families; `edgees tasks show SPEC` prints a task's examples."""

from __future__ import annotations

import json

from edgees.tasks.base import get_task, list_tasks, parse_options, task_options


def register(subparsers) -> None:
    p = subparsers.add_parser("tasks", help="list the tasks (rewards) you can fine-tune for",
                              description="Tasks: prompts with a fixed train/held-out split and a reward. "
                              "--task takes a name below or a spec (jsonl:PATH, python:MODULE:FUNCTION, "
                              "onnx:PATH); options go as --task-opt KEY=VALUE.")
    sub = p.add_subparsers(dest="tasks_command", metavar="ACTION")
    ls = sub.add_parser("ls", help="names, spec forms, options and one-line descriptions")
    ls.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    ls.set_defaults(func=run_ls)
    show = sub.add_parser("show", help="build a task and print its split sizes and first held-out examples")
    show.add_argument("spec", metavar="TASK", help="a task name or spec, e.g. arithmetic or jsonl:data.jsonl")
    show.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE",
                      help="a task option, e.g. match=numeric (repeatable)")
    show.add_argument("-n", type=int, default=3, help="how many held-out examples to print (default 3)")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=run_show)
    p.set_defaults(func=run_ls, json=False)


def run_ls(args) -> int:
    rows = [{"task": name, "description": desc, "options": task_options(name)} for name, desc in list_tasks()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["task"]) for r in rows)
    for r in rows:
        print(f"{r['task']:<{width}}  {r['description']}")
        print(f"{'':<{width}}  options: {', '.join(r['options'])}")
    return 0


def run_show(args) -> int:
    task = get_task(args.spec, **parse_options(args.task_opt))
    train, heldout = task.split(None, None)
    shown = [{"prompt": e.prompt, "fields": e.fields} for e in heldout[: max(0, args.n)]]
    info = {"task": task.name, "chat": task.chat, "max_tokens": task.max_tokens, "stop": task.stop,
            "n_train": len(train), "n_heldout": len(heldout), "primary_metric": task.primary,
            "labels": task.labels, "heldout_examples": shown}
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(f"{task.name}: {len(train)} train, {len(heldout)} held-out; chat={task.chat} "
          f"max_tokens={task.max_tokens} stop={task.stop!r}; primary metric {task.primary}")
    if info["labels"]:
        print(f"  a classification: {len(info['labels'])} labels ({', '.join(info['labels'])})")
    for ex in shown:
        prompt = ex["prompt"] if isinstance(ex["prompt"], str) else ex["prompt"][-1]["content"]
        print(f"  {prompt!r}  {json.dumps(ex['fields'], default=str)}")
    return 0
