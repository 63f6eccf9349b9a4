// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: binds to a device whose BAR2 holds an ABI v1 page, sets up the doorbell
//! interrupt where the device has one, and starts the [`Engine`].
//!
//! Two devices carry the page:
//!
//! - QEMU's `-device migtime` (1b36:0016): created by the VMM for this VM alone; BAR1 is MSI-X
//!   (vector 0 is the doorbell), BAR2 the page. Always bound.
//! - ivshmem (1af4:1110): shared memory that other VMs or host processes on the same backend
//!   can write. Bound only with the module parameter `ivshmem=1`, which says the operator made
//!   the backend private to this VM (`docs/threat-model.md`).
//!
//! Only one device is bound at a time: two pages would step the one CLOCK_REALTIME twice for
//! one migration. A second device fails to probe with `EBUSY` and a log line.

use crate::abi::PAGE_BYTES;
use crate::counters::{
    self,
    Counters, //
};
use crate::engine::Engine;
use crate::event_dev::{
    EventDevice,
    EventHub, //
};
use crate::page::{
    self,
    BarPage,
    PageBar, //
};
use crate::params::Config;
use crate::seqlock::{
    self,
    ReadError,
    Snapshot, //
};
use crate::wake::{
    self,
    Doorbell, //
};
use kernel::{
    bindings,
    device::{
        Bound,
        Core, //
    },
    irq, pci,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        Arc, //
    },
};

/// The MSI-X vector and its handler.
struct IrqParts<'bound> {
    /// Dropped (freeing the IRQ) before `vectors`, in `Drop`.
    reg: Option<Pin<KBox<irq::ThreadedRegistration<'bound, Doorbell>>>>,
    _vectors: Pin<KBox<pci::IrqVectorRegistration<'bound>>>,
}

impl Drop for IrqParts<'_> {
    fn drop(&mut self) {
        // Free the IRQ (waits for a running handler) before the vectors go.
        self.reg.take();
    }
}

/// Sets up the MSI-X doorbell (ivshmem-doorbell, `vectors=1`).
fn setup_doorbell<'bound>(
    dev: &'bound pci::Device<Bound>,
    engine: &Arc<Engine>,
) -> Result<IrqParts<'bound>> {
    let msix = pci::IrqTypes::default().with(pci::IrqType::MsiX);
    let vectors = KBox::pin(dev.alloc_irq_vectors(1, 1, msix)?, GFP_KERNEL)?;
    // SAFETY: `vectors` is heap-allocated and pinned: the registration does not move while the
    // box lives, and `IrqParts` keeps the box alive and untouched until after `reg` (the only
    // user of this reference) is dropped. So the reference is valid for as long as it is used,
    // even though the type system only sees `'bound`.
    let vref: &'bound pci::IrqVectorRegistration<'bound> =
        unsafe { &*core::ptr::from_ref::<pci::IrqVectorRegistration<'bound>>(&*vectors) };
    let vector = vref.index(0)?;
    let handler = Doorbell {
        engine: engine.clone(),
    };
    // SAFETY: The registration is stored in `IrqParts` and dropped normally, never forgotten.
    let reg = unsafe {
        irq::ThreadedRegistration::new(
            irq::IrqRequest::from(vector),
            irq::Flags::TRIGGER_NONE,
            c"migtime",
            Ok::<_, Error>(handler),
        )
    };
    let reg = KBox::pin_init(reg, GFP_KERNEL)?;
    Ok(IrqParts {
        reg: Some(reg),
        _vectors: vectors,
    })
}

/// Whether a device is bound (owned by a [`Claim`]).
static BOUND: Atomic<bool> = Atomic::new(false);

/// The right to be the one bound device; given back on drop.
struct Claim;

impl Claim {
    /// Takes the claim, or `EBUSY` (with a log line) when another device holds it.
    fn take(pdev: &pci::Device<Core<'_>>) -> Result<Self> {
        if BOUND.xchg(true, Acquire) {
            dev_err!(
                pdev,
                "another migtime device is already bound: only one clock page per guest, not binding\n"
            );
            return Err(EBUSY);
        }
        Ok(Self)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        BOUND.store(false, Release);
    }
}

/// Memory decoding enabled by `pci_enable_device_mem()`, disabled again on drop: when a probe
/// fails after enabling (not a migtime page, no memory) and when the device is unbound.
struct EnabledMem<'bound>(&'bound pci::Device<Bound>);

impl<'bound> EnabledMem<'bound> {
    fn enable(pdev: &'bound pci::Device<Core<'_>>) -> Result<Self> {
        pdev.enable_device_mem()?;
        Ok(Self(pdev))
    }
}

impl Drop for EnabledMem<'_> {
    fn drop(&mut self) {
        // The 7.3 `pci::Device` wraps `pci_enable_device_mem()` but not its counterpart.
        let raw = core::ptr::from_ref(self.0)
            .cast::<bindings::pci_dev>()
            .cast_mut();
        // SAFETY: `pci::Device` is `repr(transparent)` over `Opaque<pci_dev>`, so `raw` points at
        // the `struct pci_dev`, valid while the device is bound (`'bound`). This balances the
        // successful `pci_enable_device_mem()` in `enable` exactly once.
        unsafe { bindings::pci_disable_device(raw) };
    }
}

/// Driver data of a bound device. Fields drop in order: the claim and the enabled memory
/// decoding go last.
pub(crate) struct BoundDevice<'bound> {
    irq: Option<IrqParts<'bound>>,
    engine: Arc<Engine>,
    _misc: Pin<KBox<EventDevice>>,
    _debugfs: Pin<KBox<kernel::debugfs::Scope<Arc<Counters>>>>,
    _mem: EnabledMem<'bound>,
    _claim: Claim,
}

impl Drop for BoundDevice<'_> {
    fn drop(&mut self) {
        // Order: nothing new (stopping), no interrupt (freeing it waits for the interrupt
        // thread), no queued or running poll; then the misc device and debugfs go with the
        // fields.
        self.engine.stopping.store(true, Relaxed);
        self.irq.take();
        wake::stop(&self.engine);
        pr_info!("unbound\n");
    }
}

/// The migtime PCI driver.
pub(crate) struct MigtimeDriver;

/// Which device carries the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    /// QEMU's `-device migtime`: private to the VM, always bound.
    Migtime,
    /// ivshmem: bound only with `ivshmem=1`.
    Ivshmem,
}

/// PCI device ID of QEMU's `-device migtime` (vendor 0x1b36, Red Hat / QEMU).
const MIGTIME_DEVICE_ID: u32 = 0x0016;

/// PCI device ID of ivshmem (vendor 0x1af4, Red Hat / Qumranet).
const IVSHMEM_DEVICE_ID: u32 = 0x1110;

kernel::pci_device_table!(
    PCI_TABLE,
    <MigtimeDriver as pci::Driver>::IdInfo,
    [
        (
            pci::DeviceId::from_id(pci::Vendor::REDHAT, MIGTIME_DEVICE_ID),
            DeviceKind::Migtime
        ),
        (
            pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, IVSHMEM_DEVICE_ID),
            DeviceKind::Ivshmem
        )
    ]
);

/// Whether the operator lets ivshmem devices be bound (`ivshmem=1`).
fn ivshmem_allowed() -> bool {
    crate::module_parameters::ivshmem.value()
}

/// Reads the page at bind; `ENODEV` (with a log line saying why) when it is not a migtime page.
fn probe_page(pdev: &pci::Device<Core<'_>>, bar: &PageBar<'_>, attempts: u32) -> Result<Snapshot> {
    match seqlock::read_snapshot(&BarPage(bar), attempts) {
        Ok(ok) => Ok(ok.snapshot),
        Err(ReadError::Header(e)) => {
            dev_info!(pdev, "no migtime page ({e:?}), not binding\n");
            Err(ENODEV)
        }
        Err(ReadError::Busy { attempts }) => {
            dev_info!(
                pdev,
                "no migtime page (seqlock busy after {attempts} attempts), not binding\n"
            );
            Err(ENODEV)
        }
    }
}

impl MigtimeDriver {
    fn bind<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        kind: DeviceKind,
    ) -> Result<BoundDevice<'bound>> {
        if kind == DeviceKind::Ivshmem && !ivshmem_allowed() {
            dev_info!(
                pdev,
                "ivshmem device not bound: any peer of its memory backend could set this guest's clock; load with ivshmem=1 if the backend is private to this VM\n"
            );
            return Err(ENODEV);
        }
        let cfg = Config::from_params()?;
        let dev: &'bound pci::Device<Bound> = pdev;
        let len = dev.resource_len(2)?;
        if len < PAGE_BYTES as u64 {
            dev_info!(pdev, "no migtime page: BAR2 is {len} bytes, not binding\n");
            return Err(ENODEV);
        }
        let mem = EnabledMem::enable(pdev)?;
        let bar: PageBar<'bound> = dev.iomap_region_sized::<PAGE_BYTES>(2, c"migtime")?;
        let snap = probe_page(pdev, &bar, cfg.read_attempts)?;
        let claim = Claim::take(pdev)?;
        let guest_seq = page::guest_seq(&bar);
        let counters = Arc::new(Counters::new(), GFP_KERNEL)?;
        counters.last_seq.store(snap.migration_seq, Relaxed);
        let hub = EventHub::new()?;
        let engine = Arc::pin_init(
            Engine::new(
                bar.into_devres()?,
                cfg,
                crate::policy::Baseline::from_snapshot(&snap),
                guest_seq,
                counters.clone(),
                hub.clone(),
            ),
            GFP_KERNEL,
        )?;
        let misc = KBox::pin_init(EventDevice::register(hub), GFP_KERNEL)?;
        let debugfs = KBox::pin_init(counters::debugfs(counters), GFP_KERNEL)?;

        // MSI-X messages are memory writes by the device: it must be a bus master.
        pdev.set_master();
        let irq = match setup_doorbell(dev, &engine) {
            Ok(parts) => {
                // Safety-net poll, slower than the doorbell.
                let p = wake::poll_period_ms(cfg.poll_ms, true);
                engine.poll_period_ms.store(p, Relaxed);
                Some(parts)
            }
            Err(e) => {
                dev_info!(pdev, "no doorbell interrupt ({e:?}): polling the page\n");
                None
            }
        };
        let mode = if irq.is_some() { "doorbell" } else { "polling" };
        dev_info!(
            pdev,
            "bound: mode={} poll_ms={} step_method={:?} seq={} total_ns={} device={:?}\n",
            mode,
            engine.poll_period_ms.load(Relaxed),
            engine.step_method(),
            snap.migration_seq,
            snap.tai_delta_total_ns,
            kind
        );
        wake::arm_poll(&engine);
        Ok(BoundDevice {
            irq,
            engine,
            _misc: misc,
            _debugfs: debugfs,
            _mem: mem,
            _claim: claim,
        })
    }
}

impl pci::Driver for MigtimeDriver {
    type IdInfo = DeviceKind;
    type Data<'bound> = BoundDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        // Every table entry has its kind; a device matched otherwise (a dynamic `new_id`) is
        // treated as ivshmem, the one that needs the operator's consent.
        Self::bind(pdev, info.copied().unwrap_or(DeviceKind::Ivshmem))
    }
}
