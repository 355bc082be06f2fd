"""Outcrop: Amazon Bedrock's capabilities, self-hosted, on local models."""

__version__ = "0.1.0"
