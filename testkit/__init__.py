"""Test support shared by tests/ and bench/: synthetic films and input files (synthetic, inputs, foreign), the
controlled model whose answers a test chooses (controlled), readers of what the product writes (readers), and the
servers and browsers a test or a benchmark starts (harness). No tests live here."""
