//! Named message tags, request codes and authentication codes of the
//! Postgres wire protocol (PostgreSQL docs, "Frontend/Backend Protocol",
//! "Message Formats"), so that no bare `b'Z'` or `10` stands in the proxy.

/// Type bytes of the messages a frontend sends after startup.
pub mod frontend {
    /// Bind: parameters bound to a prepared statement, making a portal.
    pub const BIND: u8 = b'B';
    /// Close a prepared statement or portal.
    pub const CLOSE: u8 = b'C';
    /// CopyData: a chunk of COPY FROM STDIN data.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone: the end of COPY FROM STDIN data.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail: the client aborts COPY FROM STDIN.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe a prepared statement or portal.
    pub const DESCRIBE: u8 = b'D';
    /// Execute a portal.
    pub const EXECUTE: u8 = b'E';
    /// Flush: send what is pending without a Sync.
    pub const FLUSH: u8 = b'H';
    /// FunctionCall (the fast-path interface).
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse: a statement to prepare.
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse, SASLResponse or GSSResponse.
    pub const PASSWORD: u8 = b'p';
    /// Query: a simple query.
    pub const QUERY: u8 = b'Q';
    /// Sync: the end of an extended-query batch.
    pub const SYNC: u8 = b'S';
    /// Terminate: the client is leaving.
    pub const TERMINATE: u8 = b'X';

    /// Whether `tag` is a message type a frontend may send after startup.
    pub fn is_known(tag: u8) -> bool {
        matches!(
            tag,
            BIND | CLOSE
                | COPY_DATA
                | COPY_DONE
                | COPY_FAIL
                | DESCRIBE
                | EXECUTE
                | FLUSH
                | FUNCTION_CALL
                | PARSE
                | PASSWORD
                | QUERY
                | SYNC
                | TERMINATE
        )
    }

    /// Whether `tag` is answered by exactly one ReadyForQuery ("Message
    /// Flow"): Query, Sync and FunctionCall.
    pub fn is_sync_point(tag: u8) -> bool {
        matches!(tag, QUERY | SYNC | FUNCTION_CALL)
    }
}

/// Type bytes of the messages a backend sends.
pub mod backend {
    /// Authentication request (its Int32 code: [`super::auth`]).
    pub const AUTHENTICATION: u8 = b'R';
    /// BackendKeyData: the key a CancelRequest must quote.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// CommandComplete.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// DataRow.
    pub const DATA_ROW: u8 = b'D';
    /// EmptyQueryResponse.
    pub const EMPTY_QUERY: u8 = b'I';
    /// ErrorResponse.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// NoticeResponse.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// NotificationResponse (LISTEN/NOTIFY).
    pub const NOTIFICATION: u8 = b'A';
    /// ParameterStatus: a reported setting and its value.
    pub const PARAMETER_STATUS: u8 = b'S';
    /// ReadyForQuery, with the transaction status byte.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// RowDescription.
    pub const ROW_DESCRIPTION: u8 = b'T';
}

/// Authentication request codes: the Int32 after an `R` message's length.
pub mod auth {
    /// AuthenticationOk.
    pub const OK: i32 = 0;
    /// AuthenticationCleartextPassword.
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    /// AuthenticationMD5Password.
    pub const MD5_PASSWORD: i32 = 5;
    /// AuthenticationGSS.
    pub const GSS: i32 = 7;
    /// AuthenticationGSSContinue.
    pub const GSS_CONTINUE: i32 = 8;
    /// AuthenticationSSPI.
    pub const SSPI: i32 = 9;
    /// AuthenticationSASL: the list of SASL mechanisms.
    pub const SASL: i32 = 10;
    /// AuthenticationSASLContinue.
    pub const SASL_CONTINUE: i32 = 11;
    /// AuthenticationSASLFinal: the server's last SASL message.
    pub const SASL_FINAL: i32 = 12;

    /// Whether a request with `code` waits for an answer from the client
    /// (a password, a SASL or GSS response); Ok and SASLFinal do not.
    pub fn expects_answer(code: i32) -> bool {
        code != OK && code != SASL_FINAL
    }
}

/// Request codes of the startup-phase packets that are not a StartupMessage.
pub mod request {
    /// SSLRequest: the client wants TLS before anything else.
    pub const SSL: u32 = 80877103;
    /// GSSENCRequest: the client wants GSSAPI encryption.
    pub const GSSENC: u32 = 80877104;
    /// CancelRequest.
    pub const CANCEL: u32 = 80877102;
    /// The StartupMessage code of protocol 3.0 (major 3 in the high 16 bits).
    pub const PROTOCOL_3_0: u32 = 196608;
}

/// Transaction status bytes of ReadyForQuery.
pub mod status {
    /// Idle: not in a transaction block.
    pub const IDLE: u8 = b'I';
    /// In a transaction block.
    pub const IN_TRANSACTION: u8 = b'T';
    /// In a failed transaction block (queries refused until it ends).
    pub const FAILED: u8 = b'E';
}
