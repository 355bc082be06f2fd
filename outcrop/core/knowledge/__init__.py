"""Knowledge bases: document ingestion, chunking and retrieval."""
