"""LGPD: the data subject's export and erasure, retention, and the audit trail on screen."""
