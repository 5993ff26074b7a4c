"""`unitgrad train`: one run (dataset × model × optimizer × seed × label noise) into `<run dir>/train/`.

The CLI selects the run; every hyper-parameter comes from params.yaml (train.*, optim.*, model.*,
data.loader.*, noise.kind). Library use: `train_run(RunConfig.for_run(params, run, source), out_dir)`, with
`unitgrad.run_config.RunConfig` (torch-free: the report reads it too).

  data.py      the class-balanced training subset, label noise, the monitored test subset
  fit.py       Trainer: the model, optimizer, loaders; `step` (the two-pass step) and `run_epoch`
  run.py       train_run: resume, the epoch loop, checkpoints, outputs
  schedule.py  warmup + cosine LR schedule, weight-decay parameter groups
  state.py     checkpoints, RNG states, determinism
  logs.py      DVCLive files and progress lines
  cli.py       the command line

`sgd_2x` (any `<method>_<k>x` name) trains `<method>` for `train.epochs × optim.<name>.epochs_factor`.
"""
