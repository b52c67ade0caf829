//! A harness that loads the wfpcallout driver into the simulated kernel and
//! acts as a WFP client around it: adds filters with policies, classifies
//! connections, deletes filters, unloads, and checks what the verifier saw.
//! The scenario binary and the driver's tests are both written with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use fwps_types::NTSTATUS;
use wfpcallout::callbacks::state::STATE;
use wfpcallout::platform::per_cpu_counters::CounterSnapshot;
use wfpcallout::platform::status::NtStatus;
use wfpcallout::wfp::callout_table::{CALLOUTS, SUBLAYER_KEY};
use wfpcallout_simkernel::Kernel;
use wfpcallout_simkernel::engine::{self, ClassifyResult, Connection, FilterSpec};
use wfpcallout_wire::PolicyRepr;

pub use wfpcallout_simkernel as simkernel;

pub mod end_to_end;
pub mod names;
#[cfg(feature = "tryout")]
pub mod simulated_backend;
#[cfg(feature = "tryout")]
pub mod tryout;

/// One of the driver's four callouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// ALE_AUTH_CONNECT_V4.
    ConnectV4 = 0,
    /// ALE_AUTH_CONNECT_V6.
    ConnectV6 = 1,
    /// ALE_AUTH_RECV_ACCEPT_V4.
    RecvAcceptV4 = 2,
    /// ALE_AUTH_RECV_ACCEPT_V6.
    RecvAcceptV6 = 3,
    /// ALE_FLOW_ESTABLISHED_V4 (flow tracking).
    FlowV4 = 4,
    /// ALE_FLOW_ESTABLISHED_V6 (flow tracking).
    FlowV6 = 5,
}

impl Layer {
    /// The four ALE auth layers, in callout order.
    pub const ALL: [Layer; 4] = [Layer::ConnectV4, Layer::ConnectV6, Layer::RecvAcceptV4, Layer::RecvAcceptV6];
    /// The two flow-established layers.
    pub const FLOWS: [Layer; 2] = [Layer::FlowV4, Layer::FlowV6];

    /// The driver's callout spec for this layer.
    pub fn spec(self) -> &'static wfpcallout::wfp::callout_table::CalloutSpec {
        &CALLOUTS[self as usize]
    }

    /// A TCP connection at this layer to `remote_port`.
    pub fn connection(self, remote_port: u16) -> Connection {
        let spec = self.spec();
        let v6 = matches!(self, Layer::ConnectV6 | Layer::RecvAcceptV6 | Layer::FlowV6);
        let mut connection = Connection::tcp_connect_v4(remote_port);
        connection.layer_id = spec.layer_id;
        if v6 {
            connection.local_address = "2001:db8::2".parse().unwrap();
            connection.remote_address = "2001:db8::10".parse().unwrap();
        }
        connection
    }
}

/// What the filter carries as its policy.
pub enum PolicySource<'a> {
    /// No provider context at all: the default policy.
    None,
    /// An encoded policy blob.
    Policy(&'a PolicyRepr),
    /// Raw bytes (for malformed-blob tests).
    Bytes(&'a [u8]),
}

/// The driver in a booted simulated kernel.
pub struct Harness {
    /// The kernel (owns the global state while the harness lives).
    pub kernel: Kernel,
    loaded: bool,
}

impl Harness {
    /// Boots a kernel without loading the driver.
    pub fn boot() -> Self {
        Self { kernel: Kernel::boot(), loaded: false }
    }

    /// Boots and loads; panics if the driver fails to load.
    pub fn load() -> Self {
        let mut harness = Self::boot();
        harness.initialize().expect("driver initialize");
        harness
    }

    /// Runs the driver's initialize (DriverEntry's portable part).
    pub fn initialize(&mut self) -> Result<(), NtStatus> {
        let device = self.kernel.device_object();
        wfpcallout::control::lifecycle::initialize(device)?;
        self.loaded = true;
        Ok(())
    }

    /// Runs the driver's unload.
    pub fn unload(&mut self) {
        wfpcallout::control::lifecycle::unload();
        self.loaded = false;
    }

    /// Unloads and fails the test on any leak or verifier violation.
    pub fn unload_and_check(mut self) {
        self.unload();
        self.kernel.assert_unloaded_clean();
    }

    /// A filter spec at `layer` calling our callout, in our sublayer.
    /// At the flow layers the action is CALLOUT_INSPECTION, as wfpctl adds
    /// it: a filter there answers CONTINUE, which a TERMINATING action
    /// would turn into BLOCK.
    pub fn filter_spec(layer: Layer) -> FilterSpec {
        let spec = layer.spec();
        let mut filter = FilterSpec::callout(spec.layer_key, SUBLAYER_KEY, spec.key);
        if matches!(layer, Layer::FlowV4 | Layer::FlowV6) {
            filter.action = engine::FilterAction::CalloutInspection(spec.key);
        }
        filter
    }

    /// Adds a filter calling our callout with `policy` (as wfpctl would).
    pub fn add_filter(&self, layer: Layer, policy: PolicySource<'_>) -> Result<u64, NTSTATUS> {
        self.add_filter_with(Self::filter_spec(layer), policy)
    }

    /// Adds a filter from a spec, attaching `policy` as its provider context.
    pub fn add_filter_with(&self, mut spec: FilterSpec, policy: PolicySource<'_>) -> Result<u64, NTSTATUS> {
        spec.provider_context = match policy {
            PolicySource::None => None,
            PolicySource::Policy(repr) => Some(engine::add_provider_context(&repr.to_bytes())),
            PolicySource::Bytes(bytes) => Some(engine::add_provider_context(bytes)),
        };
        engine::add_filter(&spec)
    }

    /// Deletes a filter.
    pub fn delete_filter(&self, filter_id: u64) -> Result<(), NTSTATUS> {
        engine::delete_filter(filter_id)
    }

    /// Classifies a connection at `layer` through filter `filter_id`.
    pub fn classify(&self, layer: Layer, filter_id: u64, remote_port: u16) -> ClassifyResult {
        engine::classify_filter(filter_id, &layer.connection(remote_port)).expect("filter exists")
    }

    /// The driver's counters for a filter, if it holds a context for it.
    pub fn counters(&self, filter_id: u64) -> Option<CounterSnapshot> {
        STATE.table.get(filter_id).map(|context| context.counters())
    }

    /// Registers an agent handle (the token stands for a file object).
    pub fn connect_agent(&self, file: u64) {
        STATE.agents.attach(file).expect("agent slot");
    }

    /// The agent's handle is closed.
    pub fn disconnect_agent(&self, file: u64) {
        STATE.agents.detach(file, &STATE.pending);
    }

    /// Classifies through the whole layer (pending allowed).
    pub fn classify_layer(&self, layer: Layer, remote_port: u16) -> ClassifyResult {
        engine::classify(&layer.connection(remote_port))
    }

    /// Live contexts in the driver's table.
    pub fn context_count(&self) -> usize {
        STATE.table.len()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A test that panicked mid-way must not leave the driver loaded for
        // the next one.
        if self.loaded {
            wfpcallout::control::lifecycle::unload();
        }
    }
}

/// Hard-permit flag for filters (FWPM value), re-exported for tests.
pub const CLEAR_ACTION_RIGHT: u32 = fwps_types::fwp::FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT;
