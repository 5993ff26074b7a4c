"""`unitgrad grid`: the training/evaluation stages of dvc.yaml run in parallel on Ray or SLURM, committed to DVC.

DVC stays the record: the plan comes from DVC's index and graph, outputs are removed and committed with DVC's
own stage objects, and `dvc repro` finds nothing left to do afterwards.
"""
