"""The reviewer and auditor web console: server-rendered pages under /console."""
