"""Guardrail detectors, one module each, registered through the `register_guardrail_checks` hook."""
