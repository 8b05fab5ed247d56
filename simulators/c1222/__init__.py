"""C12.22 meter simulator: C12.19 tables for many meters behind one TCP relay."""
