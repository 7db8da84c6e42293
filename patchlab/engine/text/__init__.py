"""Analyses over text: per-token loss, component ablation, model comparison, token ablation and
top activating examples. Each streams its corpus in batches (generators with progress events)."""
