//! pyisapie: placeholder
