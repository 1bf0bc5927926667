"""Window state backends behind one small interface (see base.WindowStore), chosen by URL scheme."""
