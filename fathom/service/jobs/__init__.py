"""Background jobs (reindex): a queue, job records, per-tenant locks and the consumer that runs them.

Two interchangeable backends behind small interfaces (``store``, ``queue``,
``locks``): Redis when ``FATHOM_REDIS_URL`` is set (a stream with a consumer
group, hashes, ``SET NX PX`` locks), process memory otherwise, so the
embedded default needs no server. Jobs never run in a request thread: the
API enqueues, a consumer thread (in the API process, which owns the embedded
store) or ``fathom worker`` (server store backend) runs them.

Jobs see the process through a narrow interface (``services.JobServices``:
settings, store, registry, ingest and retrieval pipelines, tenants, write
generations), never the runtime; handlers are registered per kind
(``JobSystem.register``; the runtime registers ``reindex``).
"""
