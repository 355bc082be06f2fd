"""Vector stores for Knowledge Bases: ANN search with metadata filters, keyword search and hybrid fusion."""
