"""`callmood evaluate LABELS.csv`: how well the model's emotions agree with people's labels
on this center's own calls, and which alert thresholds each scenario should use.

- labels.py: the labels file, read and checked (every bad row with its line).
- predict.py: each labelled call's segment results (stored, or the model run on the file)
  and each label's predicted emotion.
- metrics.py: per-class precision, recall, F1; UA, WA; the confusion matrix.
- sweep.py: per scenario, alert precision and recall for min_confidence 0.50 to 0.95.
- output.py: text tables, CSV files and the PNG.
- run.py: the steps in order, for plugin/commands/evaluate.py.
"""
