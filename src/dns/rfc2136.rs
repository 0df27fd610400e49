//! The `rfc2136` provider: reads TXT RRsets from the primary server and applies a plan's
//! operations as one TSIG-signed dynamic update (RFC 2136, RFC 8945), which the server applies
//! atomically. TCP, because DKIM values with a signature do not fit a plain UDP message.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::Client;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsHandle, DnsMultiplexer};
use hickory_proto::op::{
    DnsRequest, DnsResponse, Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage,
};
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

use super::DnsError;
use super::address::AddressSet;
use super::backend::{
    ApiMeter, ConnectError, DnsBackend, NoMeter, SecretError, SecretSource, result_of,
};
use super::batch::{Batches, SendFn};
use super::plan::{Current, Operation, RRset};
use crate::api::{Rfc2136Spec, TsigAlgorithm as SpecAlgorithm};
use crate::domain::txt;

/// TSIG algorithms we accept, by their RFC 8945 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    fn to_hickory(self) -> TsigAlgorithm {
        match self {
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }
}

/// A primary server that accepts TSIG-signed updates. Clones share one connection and one
/// write queue: every reconcile that writes through this provider uses the same TCP
/// connection (queries pipelined on it, at most [`MAX_IN_FLIGHT`] at once), and updates to one
/// zone that arrive while another is on its way go together as one UPDATE ([`Batches`]).
#[derive(Clone)]
pub struct Rfc2136 {
    server: Arc<Server>,
    batches: Arc<Batches<Vec<Operation>>>,
}

/// The server, its key and the connection to it.
struct Server {
    address: SocketAddr,
    /// None for a reader (`Rfc2136::reader`): its queries go unsigned.
    signer: Option<TSigner>,
    timeout: Duration,
    meter: Arc<dyn ApiMeter>,
    /// The open connection and its number, made on first use and again after a failure.
    connection: tokio::sync::Mutex<Option<(u64, Client<TokioRuntimeProvider>)>>,
    connections: AtomicU64,
    in_flight: Semaphore,
}

/// How long the server may take to answer one message.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Allowed clock difference for TSIG, the RFC 8945 recommendation.
const FUDGE_SECONDS: u16 = 300;
/// Messages on their way at once on the one connection (hickory's multiplexer refuses more
/// than 32).
const MAX_IN_FLIGHT: usize = 24;
/// Bytes of record data in one combined UPDATE: well inside a TCP DNS message's 64 KiB, with
/// room for names, headers and the TSIG record.
const MAX_UPDATE_BYTES: usize = 30_000;

impl Rfc2136 {
    /// The backend for a provider's `rfc2136` settings: the server resolved, the TSIG secret
    /// read from its Secret and base64-decoded.
    pub async fn from_spec(
        spec: &Rfc2136Spec,
        secrets: &dyn SecretSource,
    ) -> Result<Self, ConnectError> {
        let server = resolve_server(&spec.server)
            .await
            .map_err(DnsError::Unreachable)?;
        let reference = &spec.tsig_secret_ref;
        let bad = || {
            SecretError::NotFound(format!(
                "Secret {} key {} is not a base64 TSIG secret",
                reference.name, reference.key
            ))
        };
        let raw = secrets.value(reference).await?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| bad())?;
        let algorithm = match spec.tsig_algorithm {
            SpecAlgorithm::HmacSha256 => Algorithm::HmacSha256,
            SpecAlgorithm::HmacSha384 => Algorithm::HmacSha384,
            SpecAlgorithm::HmacSha512 => Algorithm::HmacSha512,
        };
        Ok(Rfc2136::new(server, &spec.tsig_key_name, algorithm, key)?)
    }

    /// `secret` is the raw key (already base64-decoded).
    pub fn new(
        server: SocketAddr,
        key_name: &str,
        algorithm: Algorithm,
        secret: Vec<u8>,
    ) -> Result<Self, DnsError> {
        let name = Name::from_str(key_name)
            .map_err(|e| DnsError::Config(format!("TSIG key name `{key_name}`: {e}")))?;
        let signer = TSigner::new(secret, algorithm.to_hickory(), name, FUDGE_SECONDS)
            .map_err(|e| DnsError::Config(format!("TSIG key: {e}")))?;
        Ok(Rfc2136::with_server(Server {
            address: server,
            signer: Some(signer),
            timeout: TIMEOUT,
            meter: Arc::new(NoMeter),
            connection: tokio::sync::Mutex::new(None),
            connections: AtomicU64::new(0),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }))
    }

    /// Reads only, without TSIG: the TXT and address queries of another backend (the
    /// externalDNS export's read back) to a server that answers them.
    pub fn reader(server: SocketAddr) -> Self {
        Rfc2136::with_server(Server {
            address: server,
            signer: None,
            timeout: TIMEOUT,
            meter: Arc::new(NoMeter),
            connection: tokio::sync::Mutex::new(None),
            connections: AtomicU64::new(0),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    fn with_server(server: Server) -> Self {
        let server = Arc::new(server);
        let sender = server.clone();
        let send: SendFn<Vec<Operation>> = Arc::new(move |zone, writes| {
            let server = sender.clone();
            Box::pin(async move { server.apply(&zone, &writes.concat()).await })
        });
        Rfc2136 {
            server,
            batches: Batches::new(send, MAX_UPDATE_BYTES, |ops: &Vec<Operation>| {
                update_bytes(ops)
            }),
        }
    }

    /// Reports every message sent (query or update) to `meter`.
    pub fn with_meter(self, meter: Arc<dyn ApiMeter>) -> Self {
        let s = &self.server;
        Rfc2136::with_server(Server {
            address: s.address,
            signer: s.signer.clone(),
            timeout: s.timeout,
            meter,
            connection: tokio::sync::Mutex::new(None),
            connections: AtomicU64::new(0),
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        })
    }

    /// The server it talks to.
    pub fn server(&self) -> SocketAddr {
        self.server.address
    }

    /// How many TCP connections this backend has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.server.connections.load(Ordering::Relaxed)
    }

    /// The TXT RRsets at `names`, as the primary server holds them, asked all at once on the
    /// one connection.
    pub async fn read(&self, names: &[String]) -> Result<Current, DnsError> {
        let answers =
            futures_util::future::join_all(names.iter().map(|n| self.server.query_txt(n))).await;
        let mut current = Current::new();
        for (name, answer) in names.iter().zip(answers) {
            if let Some(rrset) = answer? {
                current.insert(name.clone(), rrset);
            }
        }
        Ok(current)
    }

    /// The CNAME, A and AAAA records at `name`.
    pub async fn read_address(&self, name: &str) -> Result<AddressSet, DnsError> {
        self.server.read_address(name).await
    }

    /// Replaces the address records at `name` in one signed update whose prerequisites are
    /// exactly `before` (RFC 2136 §2.4): the server refuses it if anyone changed them.
    pub async fn write_address(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        self.server.write_address(zone, name, before, after).await
    }

    /// Applies the operations in `zone` in one signed update message, possibly together with
    /// other reconciles' operations for the same zone (still all of these or none of them).
    pub async fn apply(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        if operations.is_empty() {
            return Ok(());
        }
        self.batches.submit(zone, operations.to_vec()).await
    }
}

/// The weight of one write in a combined UPDATE: its record data and names, roughly.
fn update_bytes(operations: &[Operation]) -> usize {
    operations
        .iter()
        .map(|op| match op {
            Operation::Add { name, value, .. } | Operation::Remove { name, value } => {
                name.len() + value.len() + value.len() / 255 + 16
            }
        })
        .sum()
}

impl Server {
    /// The open connection (number, client, whether it was just made), opened if there is none.
    async fn client(&self) -> Result<(u64, Client<TokioRuntimeProvider>, bool), DnsError> {
        let mut connection = self.connection.lock().await;
        if let Some((number, client)) = connection.as_ref() {
            return Ok((*number, client.clone(), false));
        }
        let (connect, handle) = TcpClientStream::new(
            self.address,
            None,
            Some(self.timeout),
            TokioRuntimeProvider::default(),
        );
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| DnsError::Unreachable(format!("{}: connection timed out", self.address)))?
            .map_err(|e| DnsError::Unreachable(format!("{}: {e}", self.address)))?;
        let mut sender = DnsMultiplexer::new(stream, handle)
            .with_timeout(self.timeout)
            .with_max_active_requests(MAX_IN_FLIGHT);
        if let Some(signer) = &self.signer {
            sender = sender.with_signer(signer.clone());
        }
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(sender);
        tokio::spawn(background);
        let number = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        *connection = Some((number, client.clone()));
        Ok((number, client, true))
    }

    /// Drops connection `number` if it is still the open one: the next message opens another.
    async fn forget(&self, number: u64) {
        let mut connection = self.connection.lock().await;
        if connection.as_ref().is_some_and(|(n, _)| *n == number) {
            *connection = None;
        }
    }

    /// Sends `message` and returns the answer. A failure on a connection that served before
    /// (the server closes idle ones) is tried once more on a new connection; every message is
    /// counted.
    async fn exchange(&self, message: Message) -> Result<DnsResponse, DnsError> {
        let result = self.exchange_uncounted(message).await;
        self.meter.request("rfc2136", result_of(&result));
        result
    }

    async fn exchange_uncounted(&self, message: Message) -> Result<DnsResponse, DnsError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| DnsError::Unreachable(format!("{}: closed", self.address)))?;
        loop {
            let (number, client, fresh) = self.client().await?;
            let mut responses = client.send(DnsRequest::from(message.clone()));
            let error = match responses.next().await {
                Some(Ok(response)) => return Ok(response),
                Some(Err(e)) => from_net(&self.address, e.to_string()),
                None => DnsError::Unreachable(format!("{}: no answer", self.address)),
            };
            if matches!(error, DnsError::Auth(_)) {
                return Err(error);
            }
            self.forget(number).await;
            if fresh {
                return Err(error);
            }
            tracing::debug!(server = %self.address, %error, "DNS connection failed; opening a new one");
        }
    }

    async fn query_txt(&self, name: &str) -> Result<Option<RRset>, DnsError> {
        let response = self
            .exchange(query(fqdn(name)?, RecordType::TXT))
            .await
            .map_err(|e| e.with_detail(&format!("TXT query for {name}")))?;
        match response.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            // A query outside the zones the server has is refused (no recursion here).
            ResponseCode::Refused | ResponseCode::NotAuth | ResponseCode::NotZone => {
                return Err(DnsError::ZoneNotFound(format!(
                    "{}: TXT query for {name}: {}: the server does not serve that zone",
                    self.address, response.metadata.response_code
                )));
            }
            code => return Err(from_rcode(code, &format!("TXT query for {name}"))),
        }
        let mut rrset = RRset::default();
        for record in &response.answers {
            if let RData::TXT(data) = &record.data {
                rrset.ttl = record.ttl;
                rrset.values.push(txt::join(&data.txt_data));
            }
        }
        Ok((!rrset.values.is_empty()).then_some(rrset))
    }

    /// The CNAME, A and AAAA records at `name`, asked at once.
    async fn read_address(&self, name: &str) -> Result<AddressSet, DnsError> {
        let owner = fqdn(name)?;
        let types = [RecordType::CNAME, RecordType::A, RecordType::AAAA];
        let answers = futures_util::future::join_all(
            types.map(|rtype| self.exchange(query(owner.clone(), rtype))),
        )
        .await;
        let mut set = AddressSet::default();
        for (rtype, response) in types.into_iter().zip(answers) {
            let response =
                response.map_err(|e| e.with_detail(&format!("{rtype} query for {name}")))?;
            match response.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => {}
                code => return Err(from_rcode(code, &format!("{rtype} query for {name}"))),
            }
            // An A query at a CNAME answers with the CNAME (and what it points at): only
            // records of the asked type at this very name count.
            for record in response.answers.iter().filter(|r| r.name == owner) {
                match &record.data {
                    RData::CNAME(target) if rtype == RecordType::CNAME => {
                        set.cname = Some(
                            target
                                .0
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        );
                    }
                    RData::A(ip) if rtype == RecordType::A => set.a.push(ip.0),
                    RData::AAAA(ip) if rtype == RecordType::AAAA => set.aaaa.push(ip.0),
                    _ => continue,
                }
                set.ttl = record.ttl;
            }
        }
        Ok(set)
    }

    async fn write_address(
        &self,
        zone: &str,
        name: &str,
        before: &AddressSet,
        after: &AddressSet,
    ) -> Result<(), DnsError> {
        let owner = fqdn(name)?;
        let mut message = update_message(zone)?;
        for (rtype, records) in [
            (RecordType::CNAME, address_data(before, RecordType::CNAME)?),
            (RecordType::A, address_data(before, RecordType::A)?),
            (RecordType::AAAA, address_data(before, RecordType::AAAA)?),
        ] {
            if records.is_empty() {
                // "RRset does not exist": class NONE, no data.
                let mut none = Record::update0(owner.clone(), 0, rtype);
                none.dns_class = DNSClass::NONE;
                message.add_pre_requisite(none);
            } else {
                // "RRset exists (value dependent)": the whole RRset, TTL 0.
                for data in records {
                    message.add_pre_requisite(Record::from_rdata(owner.clone(), 0, data));
                }
                // Delete that RRset.
                let mut any = Record::update0(owner.clone(), 0, rtype);
                any.dns_class = DNSClass::ANY;
                message.add_update(any);
            }
        }
        for rtype in [RecordType::CNAME, RecordType::A, RecordType::AAAA] {
            for data in address_data(after, rtype)? {
                message.add_update(Record::from_rdata(owner.clone(), after.ttl, data));
            }
        }
        let response = self.exchange(message).await?;
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code @ (ResponseCode::YXRRSet | ResponseCode::NXRRSet) => {
                Err(DnsError::ConcurrentChange(format!(
                    "the address records at {name} changed since they were read ({code})"
                )))
            }
            code => Err(from_rcode(
                code,
                &format!("update of {name} in zone {zone}"),
            )),
        }
    }

    /// The operations as one signed update message.
    async fn apply(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        let mut message = update_message(zone)?;
        for op in operations {
            let record = match op {
                Operation::Add { name, ttl, value } => txt_record(name, *ttl, value, DNSClass::IN)?,
                Operation::Remove { name, value } => txt_record(name, 0, value, DNSClass::NONE)?,
            };
            message.add_update(record);
        }
        let response = self.exchange(message).await?;
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(from_rcode(code, &format!("update of zone {zone}"))),
        }
    }
}

/// A query for `rtype` at `name`, without recursion (the server is authoritative).
fn query(name: Name, rtype: RecordType) -> Message {
    let mut message = Message::new(0, MessageType::Query, OpCode::Query);
    let mut q = Query::query(name, rtype);
    q.set_query_class(DNSClass::IN);
    message.add_query(q);
    message
}

/// An empty UPDATE of `zone`.
fn update_message(zone: &str) -> Result<Message, DnsError> {
    let mut message = Message::new(0, MessageType::Query, OpCode::Update);
    let mut zone_query = Query::query(fqdn(zone)?, RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_zone(zone_query);
    Ok(message)
}

impl DnsBackend for Rfc2136 {
    fn kind(&self) -> &'static str {
        "rfc2136"
    }

    /// One server serves every zone it has: the zone is not needed to ask.
    fn read<'a>(
        &'a self,
        _zone: &'a str,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<Current, DnsError>> {
        Box::pin(Rfc2136::read(self, names))
    }

    /// RFC 2136 adds and deletes single values, so `current` is not needed.
    fn apply<'a>(
        &'a self,
        zone: &'a str,
        _current: &'a Current,
        operations: &'a [Operation],
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(Rfc2136::apply(self, zone, operations))
    }

    fn read_address<'a>(
        &'a self,
        _zone: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<AddressSet, DnsError>> {
        Box::pin(Rfc2136::read_address(self, name))
    }

    fn write_address<'a>(
        &'a self,
        zone: &'a str,
        name: &'a str,
        before: &'a AddressSet,
        after: &'a AddressSet,
    ) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(Rfc2136::write_address(self, zone, name, before, after))
    }
}

/// An error response code, with what to check.
fn from_rcode(code: ResponseCode, what: &str) -> DnsError {
    match code {
        ResponseCode::NotAuth
        | ResponseCode::BADSIG
        | ResponseCode::BADKEY
        | ResponseCode::BADTIME => DnsError::Auth(format!(
            "the DNS server refused the TSIG signature ({what}: {code}): check the key name, algorithm and secret"
        )),
        ResponseCode::NotZone => DnsError::ZoneNotFound(format!(
            "{what}: {code}: the server is not authoritative for that zone"
        )),
        ResponseCode::Refused => DnsError::Refused(format!(
            "the DNS server refused the request ({what}: {code}): check that the zone exists there and that the key may update it"
        )),
        other => DnsError::Server(format!("{what}: {other}")),
    }
}

/// A transport-level failure; a TSIG failure shows up here when the server's answer cannot be
/// verified.
fn from_net(server: &SocketAddr, message: String) -> DnsError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("tsig")
        || lower.contains("signature")
        || lower.contains("notauth")
        || lower.contains("badsig")
    {
        DnsError::Auth(format!(
            "the DNS server refused the TSIG signature ({server}: {message}): check the key name, algorithm and secret"
        ))
    } else {
        DnsError::Unreachable(format!("{server}: {message}"))
    }
}

/// `host:port`, `[v6]:port` or a bare host (port 53).
pub(crate) async fn resolve_server(server: &str) -> Result<SocketAddr, String> {
    let has_port = server.parse::<SocketAddr>().is_ok()
        || server
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok());
    let with_port = if has_port {
        server.to_owned()
    } else {
        format!("{server}:53")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("rfc2136 server `{server}` cannot be resolved: {e}"))?
        .next()
        .ok_or_else(|| format!("rfc2136 server `{server}` has no address"))
}

fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name)
        .map_err(|e| DnsError::Config(format!("`{name}` is not a DNS name: {e}")))?;
    n.set_fqdn(true);
    Ok(n)
}

fn txt_record(name: &str, ttl: u32, value: &str, class: DNSClass) -> Result<Record, DnsError> {
    let strings = txt::split(value);
    let mut record = Record::from_rdata(fqdn(name)?, ttl, RData::TXT(TXT::from_bytes(strings)));
    record.dns_class = class;
    Ok(record)
}

/// The records of one type in `set`, as record data.
fn address_data(set: &AddressSet, rtype: RecordType) -> Result<Vec<RData>, DnsError> {
    Ok(match rtype {
        RecordType::CNAME => match &set.cname {
            Some(target) => vec![RData::CNAME(CNAME(fqdn(target)?))],
            None => Vec::new(),
        },
        RecordType::A => set.a.iter().map(|ip| RData::A(A(*ip))).collect(),
        RecordType::AAAA => set.aaaa.iter().map(|ip| RData::AAAA(AAAA(*ip))).collect(),
        _ => Vec::new(),
    })
}
