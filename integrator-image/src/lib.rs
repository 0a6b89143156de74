//! lapidary-integrator library.
