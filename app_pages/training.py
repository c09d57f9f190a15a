"""Training: pick a stage config, adjust it, run it in its own process and follow it live."""

import time

import pandas as pd
import streamlit as st

from cxr_app import charts
from cxr_app.site_ui import activation_panel, adaptation_section
from cxr_app.state import page_preamble, registry
from cxr_core.config import BACKBONES, BALANCING
from cxr_core.errors import CXRError
from train import launcher
from train.run_folder import RunFolder, default_runs_dir, training_in_progress

RUNS_DIR = default_runs_dir()

st.title("Training")
page = page_preamble()
configs = launcher.list_configs()
if not configs:
    st.error("No configs found under train/configs/.")
    st.stop()
names = [str(p.relative_to(launcher.CONFIG_DIR)) for p in configs]
# The config and budget live in the URL's query parameters, so a reload keeps them, and in the session, so a
# page switch (whose link carries no query parameters) keeps them too.
KEPT = "training_choice"
kept = st.session_state.setdefault(KEPT, {})
wanted = st.query_params.get("config") or kept.get("config", "shipped.toml")
picked = st.selectbox("Stage config", names, index=names.index(wanted) if wanted in names else 0)
st.query_params["config"] = kept["config"] = picked
try:
    budgets = ["(full)"] + sorted(launcher.resolve_config(launcher.CONFIG_DIR / picked, {}).budgets)
    wanted_budget = st.query_params.get("budget") or kept.get("budget", "(full)")
    budget = st.selectbox("Budget", budgets, index=budgets.index(wanted_budget) if wanted_budget in budgets else 0,
                          help="A config's [budget.NAME] table: reduced image size, subset and epochs.")
    st.query_params["budget"] = kept["budget"] = budget
    budget = None if budget == "(full)" else budget
    base = launcher.resolve_config(launcher.CONFIG_DIR / picked, {}, budget)
except CXRError as exc:
    st.error(str(exc))
    st.stop()
st.caption(base.description or "")
if picked.startswith("experiments"):
    st.caption("An experiment: several runs; results appear on the Experiments page.")

GUARDS_HELP = ("After training, the check that refuses what is not a chest film is fitted on the training films; "
               "a smaller budget fits it faster and makes it less reliable. The model card records it.")

with st.form("config_form"):
    c1, c2, c3, c4 = st.columns(4)
    form = {
        "model.backbone": c1.selectbox("Backbone", BACKBONES, index=BACKBONES.index(base.model.backbone)),
        "model.weights": c2.text_input("Weights", base.model.weights, help='"none", "imagenet" or a weights file path'),
        "data.image_size": c3.number_input("Image size (px)", 16, 1024, base.data.image_size, step=16),
        "model.trainable_layers": c4.number_input("Trainable top layers (-1 = all)", -1, 1000, base.model.trainable_layers),
        "train.epochs": c1.number_input("Epochs", 1, 1000, base.train.epochs),
        "train.batch_size": c2.number_input("Batch size", 1, 1024, base.train.batch_size),
        "train.learning_rate": c3.number_input("Learning rate", 1e-7, 1.0, base.train.learning_rate, format="%.6f"),
        "train.label_smoothing": c4.number_input("Label smoothing", 0.0, 0.49, base.train.label_smoothing, step=0.05),
        "augment.strength": c1.number_input("Augmentation strength", 0.0, 5.0, base.augment.strength, step=0.25),
        "data.balancing": c2.selectbox("Balancing case", BALANCING, index=BALANCING.index(base.data.balancing)),
        "train.class_weights": c3.checkbox("Class weights", base.train.class_weights),
        "data.root": c4.text_input("Training data folder", base.data.root),
        "guards.appearance_epochs": c1.number_input(
            "Chest-film check: epochs", 1, 1000, base.guards.appearance_epochs, help=GUARDS_HELP),
        "guards.appearance_min_steps": c2.number_input(
            "Chest-film check: minimum updates", 1, 100_000, base.guards.appearance_min_steps, help=GUARDS_HELP),
    }
    st.caption(f"Models trained here are registered in your own folder, `{registry().write_root}`; one below its "
               "validation gate is kept as an experiment, hidden from the model picker.")
    minutes = launcher.estimate_minutes(base, launcher.list_runs(RUNS_DIR))
    eta = (f"about {minutes:.0f} min on this machine (from earlier runs at this size)" if minutes else
           "unknown: no earlier run at this image size and backbone to estimate it from")
    size = (f"{base.data.image_size} px, {base.train.epochs} epoch(s)"
            + (f", {base.data.subset_fraction:.0%} of the films" if base.data.subset_fraction < 1 else ""))
    st.caption(f"Estimated time ({size}): {eta}.")
    confirmed = st.checkbox("I understand: training uses this machine's CPU until it ends (one run at a time)")
    full_ok = budget is not None or st.checkbox(
        f"Yes, a full run ({size}; estimated time {eta})",
        help="No reduced budget is chosen: this is the config's whole training. Pick a budget above for a short run.")
    submitted = st.form_submit_button("Start training", icon=":material/play_arrow:", type="primary")

if submitted and not confirmed:
    st.warning("Tick the confirmation above the Start button to start.")
elif submitted and not full_ok:
    st.warning(f"This is a full run (estimated time {eta}): tick 'Yes, a full run' to start it, or pick a budget.")
elif submitted:
    try:
        overrides = launcher.changed_fields(base, form)
        launcher.check_data(launcher.resolve_config(launcher.CONFIG_DIR / picked, overrides, budget))
        run_dir = launcher.start(launcher.CONFIG_DIR / picked, overrides, RUNS_DIR, registry().write_root,
                                 budget=budget)
        st.session_state["followed_run"] = str(run_dir)
        st.success(f"Started {run_dir.name}" + (f" with {', '.join(f'{k} = {v}' for k, v in overrides.items())}"
                                                if overrides else ""))
    except CXRError as exc:
        st.error(f"Not started: {exc}")


@st.fragment(run_every=2)
def live_run() -> None:
    """Follows the newest (or the just-started) run from its folder: survives refreshes and restarts."""
    followed = st.session_state.get("followed_run")
    current = next((r for r in launcher.list_runs(RUNS_DIR) if str(r.run_dir) == followed), None)
    if current is None:
        latest = launcher.list_runs(RUNS_DIR)
        current = latest[0] if latest else None
    if current is None:
        st.info("No training run yet.")
        return
    s = current.status
    state = current.state
    st.subheader(f"Run {current.name}: {state}")
    epoch, epochs = int(s.get("epoch", 0)), int(s.get("epochs", 1))
    eta = s.get("eta_s")
    text = f"epoch {epoch} / {epochs}" + (f", ETA {eta / 60:.1f} min" if state == "running" and eta else "")
    st.progress(min(1.0, epoch / max(1, epochs)), text=text)
    st.caption(s.get("message", ""))
    if s.get("workers"):  # a local cluster started with --workers N (train.workers)
        st.caption("Workers: " + "; ".join(f"{w['task']} ({w['role']}, pid {w['pid']}): {w['state']}"
                                           for w in s["workers"]))
    elif (s.get("distribution") or {}).get("workers", 1) > 1:
        st.caption(f"{s['distribution']['strategy']} over {s['distribution']['workers']} workers")
    if state == "running":
        if st.button("Stop this run", icon=":material/stop:", key="stop"):
            launcher.stop(current.run_dir)
            st.toast("Stop requested: the run stops after its current batch; Resume continues it from its last epoch.")
    elif state in ("stopped", "interrupted", "failed"):
        if st.button("Resume this run", icon=":material/play_arrow:", key="resume"):
            try:
                launcher.resume(current)
                st.toast("Resumed: it continues from its last finished epoch.")
            except CXRError as exc:
                st.error(str(exc))
    history = RunFolder(current.run_dir).read_history()
    if history:
        c1, c2 = st.columns(2)
        c1.plotly_chart(charts.training_curves(history, [("loss", "train loss"), ("val_loss", "validation loss")], "Loss"),
                        width="stretch", key="loss_curve")
        c2.plotly_chart(charts.training_curves(history, [("accuracy", "train accuracy"), ("val_accuracy", "validation accuracy"),
                                                         ("val_auc", "validation AUC (binary)")], "Accuracy and AUC"),
                        width="stretch", key="acc_curve")
        st.plotly_chart(charts.training_curves(history, [("learning_rate", "learning rate")], "Learning rate"),
                        width="stretch", key="lr_curve")


live_run()

st.divider()
st.subheader("Run history")


@st.fragment(run_every=5)
def run_history() -> None:
    """Re-reads the run folders every few seconds: a run that ends shows "finished" without a reload."""
    runs = launcher.list_runs(RUNS_DIR)
    if not runs:
        st.caption("No runs yet.")
        return
    rows = []
    for r in runs:
        m = r.status.get("metrics", {})
        rows.append({"run": r.name, "state": r.state, "model": r.status.get("model_id"),
                     "backbone": r.config.get("model", {}).get("backbone"), "size": r.config.get("data", {}).get("image_size"),
                     "epochs done": f"{r.status.get('epoch', 0)} / {r.status.get('epochs', '?')}",
                     "val AUC": m.get("val_auc"), "val accuracy": m.get("val_binary_accuracy"),
                     "val 3-class acc.": m.get("val_3class_accuracy"), "command": r.config.get("command")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    finished = [r.status.get("model_id") for r in runs if r.state == "finished" and r.status.get("model_id")]
    entries = [e for e in registry().list() if e.model_id in finished]
    if entries:
        st.markdown("**The site's model.** A finished model becomes every user's default only through this "
                    "governed change: evidence on this site's own films (the model and the site's model compared on "
                    "the same local films), a named reader and a confirmation, the audit trail; revertible. A "
                    "reduced-budget run never does.")
        activation_panel(page, entries, key="trained")
    if training_in_progress(RUNS_DIR):
        st.caption(f"A run is in progress ({time.strftime('%H:%M:%S')}); starting another is refused until it ends.")


run_history()

st.divider()
adaptation_section(page)
