"""Engine: loads models and runs patching and decomposition passes (torch, no Qt)."""
