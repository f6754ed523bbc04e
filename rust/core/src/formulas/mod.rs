//! One pure function per quantity. Each documents its formula and its source.

pub mod comm;
pub mod energy;
pub mod flops;
pub mod gemm;
pub mod memory;
pub mod params;
