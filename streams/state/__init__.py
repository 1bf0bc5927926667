"""Window state backends behind one interface (base.WindowStore), chosen by URL scheme (backends)."""
