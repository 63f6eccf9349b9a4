// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: binds to an ivshmem device (1af4:1110) whose BAR2 holds an ABI v1 page, sets
//! up the doorbell interrupt where the device has one, and starts the [`Engine`].

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
    device::{
        Bound,
        Core, //
    },
    irq, pci,
    prelude::*,
    sync::{
        atomic::Relaxed,
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

/// Driver data of a bound device.
pub(crate) struct BoundDevice<'bound> {
    irq: Option<IrqParts<'bound>>,
    engine: Arc<Engine>,
    _misc: Pin<KBox<EventDevice>>,
    _debugfs: Pin<KBox<kernel::debugfs::Scope<Arc<Counters>>>>,
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

kernel::pci_device_table!(
    PCI_TABLE,
    <MigtimeDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, 0x1110),
        ()
    )]
);

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
    fn bind<'bound>(pdev: &'bound pci::Device<Core<'_>>) -> Result<BoundDevice<'bound>> {
        let cfg = Config::from_params()?;
        let dev: &'bound pci::Device<Bound> = pdev;
        let len = dev.resource_len(2)?;
        if len < PAGE_BYTES as u64 {
            dev_info!(pdev, "no migtime page: BAR2 is {len} bytes, not binding\n");
            return Err(ENODEV);
        }
        pdev.enable_device_mem()?;
        let bar: PageBar<'bound> = dev.iomap_region_sized::<PAGE_BYTES>(2, c"migtime")?;
        let snap = probe_page(pdev, &bar, cfg.read_attempts)?;
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
            "bound: mode={} poll_ms={} step_method={:?} seq={} total_ns={}\n",
            mode,
            engine.poll_period_ms.load(Relaxed),
            engine.step_method(),
            snap.migration_seq,
            snap.tai_delta_total_ns
        );
        wake::arm_poll(&engine);
        Ok(BoundDevice {
            irq,
            engine,
            _misc: misc,
            _debugfs: debugfs,
        })
    }
}

impl pci::Driver for MigtimeDriver {
    type IdInfo = ();
    type Data<'bound> = BoundDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        Self::bind(pdev)
    }
}
