"""Toy languages with known circuits and the models trained on them.

``patchlab.toy.language`` (numpy only) samples the language; ``patchlab.toy.pairs`` makes fresh
clean/corrupted prompt pairs per rule; ``patchlab.toy.train`` trains the embedded models
(``python -m patchlab.toy.train --out resources/models``). This ``__init__`` imports nothing
heavy so ``patchlab.core`` may use the language module.
"""
