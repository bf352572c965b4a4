//! The swap engine composed: embedded mode, service entry points and the demo client.
