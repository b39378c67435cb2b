//! Where batches are assembled: on the host for CPU backends, on the device for GPUs.
//!
//! On a CPU the host loop that crops, flips and normalises is the cheapest path, and the
//! "device" is the same memory anyway. A GPU would wait on that loop and on copying every batch
//! as `f32`, so there the dataset is uploaded once and batches are built on the device
//! ([`DeviceLoader`]). Both draw the same orders, crops and flips, so a run is the same run
//! either way, up to floating-point tolerance.

use burn::tensor::Device;
use kaiming_cifar::{Batch, CifarDataset, DeviceEpoch, DeviceLoader, Epoch, Loader};

/// The batches of a split, built where the backend computes best.
///
/// A run holds one per split, so the variants' difference in size costs nothing worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Feed {
    /// Built on the CPU, then handed to the device.
    Host {
        /// The loader.
        loader: Loader,
        /// Where batches go.
        device: Device,
    },
    /// Built on the device from a resident copy of the dataset.
    Device(DeviceLoader),
}

impl Feed {
    /// Batches of `loader` on `device`, assembled there when `on_device` (GPU backends).
    pub fn new(loader: Loader, device: &Device, on_device: bool) -> Self {
        if on_device {
            Feed::Device(DeviceLoader::new(loader, device))
        } else {
            Feed::Host {
                loader,
                device: device.clone(),
            }
        }
    }

    /// The host loader (orders, transforms, the dataset).
    pub fn loader(&self) -> &Loader {
        match self {
            Feed::Host { loader, .. } => loader,
            Feed::Device(resident) => resident.host(),
        }
    }

    /// The images batched.
    pub fn dataset(&self) -> &CifarDataset {
        self.loader().dataset()
    }

    /// Batches in every epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.loader().batches_per_epoch()
    }

    /// The batches of `epoch`.
    pub fn epoch(&self, epoch: u64) -> FeedEpoch<'_> {
        match self {
            Feed::Host { loader, device } => FeedEpoch::Host(loader.epoch(epoch), device),
            Feed::Device(resident) => FeedEpoch::Device(resident.epoch(epoch)),
        }
    }
}

/// One epoch of a [`Feed`], with random access to its batches.
#[derive(Debug)]
pub enum FeedEpoch<'a> {
    /// Host-built batches and their destination.
    Host(Epoch<'a>, &'a Device),
    /// Device-built batches.
    Device(DeviceEpoch<'a>),
}

impl FeedEpoch<'_> {
    /// Batch `index`, on the feed's device, or `None` past the last.
    pub fn batch(&self, index: usize) -> Option<Batch> {
        match self {
            FeedEpoch::Host(epoch, device) => epoch.batch(index).map(|b| b.into_batch(device)),
            FeedEpoch::Device(epoch) => epoch.batch(index),
        }
    }
}
