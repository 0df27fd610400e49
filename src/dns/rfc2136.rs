//! The `rfc2136` provider: reads TXT RRsets from the primary server and applies a plan's
//! operations as one TSIG-signed dynamic update (RFC 2136, RFC 8945), which the server applies
//! atomically. TCP, because DKIM values with a signature do not fit a plain UDP message.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsHandle, DnsMultiplexer};
use hickory_proto::op::{DnsRequest, Message, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use super::DnsError;
use super::plan::{Current, Operation, RRset};
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

/// A primary server that accepts TSIG-signed updates.
#[derive(Clone)]
pub struct Rfc2136 {
    server: SocketAddr,
    signer: TSigner,
    timeout: Duration,
}

/// How long the server may take to answer one message.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Allowed clock difference for TSIG, the RFC 8945 recommendation.
const FUDGE_SECONDS: u16 = 300;

impl Rfc2136 {
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
        Ok(Rfc2136 {
            server,
            signer,
            timeout: TIMEOUT,
        })
    }

    async fn client(&self) -> Result<Client<TokioRuntimeProvider>, DnsError> {
        let (connect, handle) = TcpClientStream::new(
            self.server,
            None,
            Some(self.timeout),
            TokioRuntimeProvider::default(),
        );
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| DnsError::Unreachable(format!("{}: connection timed out", self.server)))?
            .map_err(|e| DnsError::Unreachable(format!("{}: {e}", self.server)))?;
        let sender = DnsMultiplexer::new(stream, handle)
            .with_timeout(self.timeout)
            .with_signer(self.signer.clone());
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(sender);
        tokio::spawn(background);
        Ok(client)
    }

    /// The TXT RRsets at `names`, as the primary server holds them.
    pub async fn read(&self, names: &[String]) -> Result<Current, DnsError> {
        let mut client = self.client().await?;
        let mut current = Current::new();
        for name in names {
            let fqdn = fqdn(name)?;
            let response = client
                .query(fqdn, DNSClass::IN, RecordType::TXT)
                .await
                .map_err(|e| {
                    DnsError::Unreachable(format!("{}: TXT query for {name}: {e}", self.server))
                })?;
            match response.metadata.response_code {
                ResponseCode::NoError | ResponseCode::NXDomain => {}
                code => return Err(DnsError::from_rcode(code, &format!("TXT query for {name}"))),
            }
            let mut rrset = RRset::default();
            for record in &response.answers {
                if let RData::TXT(data) = &record.data {
                    rrset.ttl = record.ttl;
                    rrset.values.push(txt::join(&data.txt_data));
                }
            }
            if !rrset.values.is_empty() {
                current.insert(name.clone(), rrset);
            }
        }
        Ok(current)
    }

    /// Applies the operations in `zone` as one signed update message.
    pub async fn apply(&self, zone: &str, operations: &[Operation]) -> Result<(), DnsError> {
        if operations.is_empty() {
            return Ok(());
        }
        let zone_name = fqdn(zone)?;
        let mut message = Message::new(
            rand_id(),
            hickory_proto::op::MessageType::Query,
            OpCode::Update,
        );
        let mut zone_query = Query::query(zone_name, RecordType::SOA);
        zone_query.set_query_class(DNSClass::IN);
        message.add_zone(zone_query);
        for op in operations {
            let record = match op {
                Operation::Add { name, ttl, value } => txt_record(name, *ttl, value, DNSClass::IN)?,
                Operation::Remove { name, value } => txt_record(name, 0, value, DNSClass::NONE)?,
            };
            message.add_update(record);
        }
        let client = self.client().await?;
        let mut responses = client.send(DnsRequest::from(message));
        let response = responses
            .next()
            .await
            .ok_or_else(|| {
                DnsError::Unreachable(format!("{}: no answer to the update", self.server))
            })?
            .map_err(|e| DnsError::from_net(&self.server, e.to_string()))?;
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            code => Err(DnsError::from_rcode(
                code,
                &format!("update of zone {zone}"),
            )),
        }
    }
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

/// A message id; only needs to differ between concurrent messages on one connection.
fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}
