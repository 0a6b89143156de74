//! lapidary's operator.
