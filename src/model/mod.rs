//! The bottom layer: the product's vocabulary, with no behaviour of its own. The kinds, every
//! annotation name, durations as they are written. Imports nothing else of the crate.

pub mod annotations;
pub mod duration;
pub mod kinds;
