"""Exporting a run for CPU deployment (`seq2seq export`): a traced, optionally int8 model.

graphs.py  the model's encode/step on flat tensors, and the decoder-state layout
write.py   quantize, trace, verify against the eager model, write the export dir
traced.py  loading an export dir's model behind the encode/step interface searches use
"""
