"""`python -m train --config train/configs/NAME.toml [--budget NAME] [--set section.key=value ...] [--workers N]`

Runs (or resumes) a training run or, for a config with an [experiment] table, a whole experiment, under the
tf.distribute strategy the environment gives (a TF_CONFIG cluster, several GPUs, or one device).
`--workers N` starts N worker processes on loopback (train.workers); under a TF_CONFIG it names the cluster's size.
Exit status: 0 done, 1 training failed or a worker ended badly, 2 bad arguments or config.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cxr_core.config import apply_budget, apply_overrides, load_config, parse_override
from cxr_core.errors import ConfigError, report_errors
from cxr_core.model.registry import Registry
from cxr_core.fitting.distribute import cluster_spec
from train.run_folder import default_runs_dir, run_dir_for
from train.workers import MAX_WORKERS, run_local_cluster


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TOML file under train/configs/")
    parser.add_argument("--budget", help="apply the config's [budget.NAME] overrides (reduced size, subset, epochs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one field, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--runs-dir", default=None, help="where runs live (default: $CXR_HOME/runs, or $CXR_RUNS_DIR)")
    parser.add_argument("--registry", default=None, help="register into this folder only (default: $CXR_HOME/models, beside the shipped models; "
                        "`--registry assets/models` is how the shipped default is made)")
    parser.add_argument("--no-register", action="store_true", help="do not add the finished model to the registry")
    parser.add_argument("--activate", action="store_true",
                        help="with --registry: make the model that registry's default if it passes its validation gate (the "
                             "release of a shipped default); a site changes its model with `python -m cxr_core models "
                             "--activate`")
    parser.add_argument("--member", "--fold", type=int, default=None, dest="member",
                        help="for an ensemble config (data.folds >= 2 or train.seeds): train only this member (0-based)")
    parser.add_argument("--reevaluate", action="store_true",
                        help="for a finished run: redo only calibration, threshold, OOD fit and model card from its best "
                             "checkpoint, and register the result as a new model")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"train with N worker processes on this machine's loopback (1 to {MAX_WORKERS}); on real "
                             "machines set TF_CONFIG on each instead (README 'Data and training')")
    args = parser.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers {args.workers} is invalid: expected an integer from 1 to {MAX_WORKERS}.")
    if args.activate and not args.registry:
        parser.error("--activate sets the default of a registry named with --registry (a release). A site changes its "
                     "model by a named reader on its own films: python -m cxr_core models --activate MODEL_ID --reader "
                     "NAME --evidence DATA_DIR.")

    # The command that reproduces the model: --reevaluate only redoes the last stage of the same run.
    command = "python -m train " + " ".join(shlex.quote(a) for a in argv if a != "--reevaluate")

    def run() -> int:
        config = load_config(args.config)
        if args.budget:
            config = apply_budget(config, args.budget)
        if args.set:
            config = apply_overrides(config, dict(parse_override(s) for s in args.set))

        registry = Registry(args.registry) if args.registry else Registry()
        runs_dir = args.runs_dir or default_runs_dir()
        if args.workers is not None and args.workers > 1:
            cluster = cluster_spec()
            if not cluster:  # this process is the launcher
                return run_local_cluster(argv, args.workers, run_dir_for(config, Path(runs_dir)), Path(runs_dir))
            size = sum(len(cluster.get(k, [])) for k in ("chief", "worker"))
            if size != args.workers:
                raise ConfigError(f"--workers {args.workers} does not match TF_CONFIG's cluster of {size} workers.")
        # TensorFlow only now: a bad config, budget, override or cluster, and the launcher, never wait for it.
        from train import experiments  # lazy: heavy
        from train.ensemble import member_config, train_ensemble  # lazy: heavy
        from train.pipeline import train  # lazy: heavy

        spec = experiments.read_experiment(args.config)
        if spec is not None:
            experiments.run_experiment(spec, config, runs_dir=runs_dir, registry=registry, command=command)
            return 0
        if args.member is not None:
            result = train(member_config(config, args.member), runs_dir=runs_dir, register=False, command=command)
        elif config.member_count():
            result = train_ensemble(config, runs_dir=runs_dir, registry=registry, register=not args.no_register,
                                    activate=args.activate, command=command)
        else:
            result = train(config, runs_dir=runs_dir, registry=registry, register=not args.no_register,
                           activate=args.activate, command=command, reevaluate=args.reevaluate)
        b = result.metrics.get("binary", {})
        if b:
            print(f"Internal validation: binary accuracy {b['accuracy']:.3f}, AUC {b['auc']:.3f}, "
                  f"3-class accuracy {result.metrics['three_class']['accuracy']:.3f}; run folder {result.run_dir}")
        return 0 if result.state == "finished" else 1

    return report_errors(run, "Stopped. Rerun the same command to resume from the last finished epoch.", 1)


if __name__ == "__main__":
    sys.exit(main())
