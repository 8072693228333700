"""Pictures of runs: training curves and attention maps, drawn with matplotlib's Agg backend.

history.py    reading a run's metrics.jsonl into series
curves.py     the training-curve panels of one or several runs (curves.png, `seq2seq plot`)
attention.py  attention matrices, one panel per head
saving.py     writing a figure to a PNG atomically
tensorboard.py  optional TensorBoard logging of the same scalars and a few attention maps
"""
