//! Layer 6, the driver as a whole: load and unload order (`lifecycle`),
//! the control device's IOCTLs (`ioctls`) and every decision the KMDF glue
//! needs (`device`, written against a `Framework` trait).

pub mod device;
pub mod ioctls;
pub mod lifecycle;
