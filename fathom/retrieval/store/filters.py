"""Engine-neutral description of the filters every query carries.

Both adapters translate a :class:`FilterSpec` into their own types. Keeping
the tenant condition in one builder means no adapter can forget it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fathom.retrieval.store.contract import MetadataFilter
from fathom.retrieval.tenancy import Tenant


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    value: str | int | bool | None = None
    any_of: tuple[str | int, ...] | None = None


@dataclass(frozen=True, slots=True)
class FilterSpec:
    must: tuple[Condition, ...]
    must_not: tuple[Condition, ...] = ()


def tenant_condition(tenant: Tenant) -> Condition:
    return Condition("tenant_id", tenant.id)


def tenant_filter(tenant: Tenant) -> FilterSpec:
    """The IDF corpus of the sparse leg, and the base of every query filter."""
    return FilterSpec((tenant_condition(tenant),))


def query_filter(tenant: Tenant, metadata: MetadataFilter | None) -> FilterSpec:
    conds = [tenant_condition(tenant)]
    for key, value in (metadata.conditions.items() if metadata else ()):
        if isinstance(value, Sequence) and not isinstance(value, str):
            conds.append(Condition(key, any_of=tuple(value)))
        else:
            conds.append(Condition(key, value))
    excluded = metadata.exclude_documents if metadata else ()
    must_not = (Condition("document_id", any_of=tuple(excluded)),) if excluded else ()
    return FilterSpec(tuple(conds), must_not)


def document_filter(tenant: Tenant, document_id: str, keep_version: int | None = None) -> FilterSpec:
    must = (tenant_condition(tenant), Condition("document_id", document_id))
    must_not = (Condition("doc_version", keep_version),) if keep_version is not None else ()
    return FilterSpec(must, must_not)
