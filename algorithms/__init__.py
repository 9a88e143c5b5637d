"""Federated fine-tuning algorithms: real learning steps that report the work and bytes they cost."""
