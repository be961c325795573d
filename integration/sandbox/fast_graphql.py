"""A fast executor for the fake Centra's large pages: the document is parsed and validated by graphql-core
against the schema (so a query Centra would refuse is refused here too), then the selection is projected over
the stored dicts directly. graphql-core's own execution costs about 2 ms per order document; this, a tenth.

It resolves exactly what the fake needs: fields by name (root fields call the store's resolvers with their
arguments), `__typename`, fragments and inline fragments on object types and interfaces (a dict's concrete
type is its `__typename`, else the fake's default for the interface). Anything it cannot run (a mutation, an
error in a resolver) falls back to graphql-core by raising FastPathUnsupported.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLAbstractType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    get_named_type,
    parse,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values


class FastPathUnsupported(Exception):
    """The request needs graphql-core's full execution."""


@lru_cache(maxsize=64)
def _parsed(schema_id: int, query: str, schema: GraphQLSchema):
    document = parse(query)
    errors = validate(schema, document)
    # The document's compiled selections (see _Projector._plan), kept as long as the parsed document is.
    return document, [e.formatted for e in errors], {}


def execute(schema: GraphQLSchema, query: str, root: dict, variables: dict, defaults: dict[str, str]) -> dict:
    """{"data": ...} or {"errors": [...]} for one request, like graphql_sync's formatted result."""
    document, errors, plans = _parsed(id(schema), query, schema)
    if errors:
        return {"errors": errors}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation.value != "query":
        raise FastPathUnsupported("one query operation only")
    operation = operations[0]
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    coerced = get_variable_values(schema, operation.variable_definitions or [], variables or {})
    if isinstance(coerced, list):
        return {"errors": [e.formatted for e in coerced]}
    runner = _Projector(schema, fragments, coerced, defaults, plans)
    return {"data": runner.object(root, operation.selection_set.selections, schema.query_type, root=True)}


class _Projector:
    """Projects stored dicts through a selection. A selection set is compiled once per concrete type into a flat
    list of fields (fragments that apply resolved, aliases and sub-types looked up), kept with the parsed document,
    so a page of 200 orders walks the query once and then only reads dicts."""

    def __init__(
        self, schema: GraphQLSchema, fragments: dict, variables: dict, defaults: dict[str, str], plans: dict
    ) -> None:
        self.schema, self.fragments, self.variables, self.defaults = schema, fragments, variables, defaults
        self.plans = plans

    def _concrete(self, value: dict, declared) -> Any:
        if isinstance(declared, GraphQLAbstractType):
            name = value.get("__typename") or self.defaults.get(declared.name)
            return self.schema.get_type(name) if name else declared
        return declared

    def _applies(self, condition: str | None, concrete) -> bool:
        if condition is None:
            return True
        wanted = self.schema.get_type(condition)
        return wanted is concrete or (
            isinstance(wanted, GraphQLAbstractType) and self.schema.is_sub_type(wanted, concrete)
        )

    def _plan(self, selections, concrete) -> list[tuple]:
        """(response key, field name or None for __typename, node, definition, sub-selections, named sub-type,
        whether that type is abstract), in the selection's order."""
        key = (id(selections), concrete.name)
        plan = self.plans.get(key)
        if plan is None:
            plan = []
            self._compile(selections, concrete, plan)
            self.plans[key] = plan
        return plan

    def _compile(self, selections, concrete, plan: list) -> None:
        for selection in selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                key = selection.alias.value if selection.alias else name
                if name == "__typename":
                    plan.append((key, None, selection, None, None, None, False))
                    continue
                definition = concrete.fields[name]
                sub, named = None, None
                if selection.selection_set is not None:
                    sub, named = selection.selection_set.selections, get_named_type(definition.type)
                abstract = isinstance(named, GraphQLAbstractType)
                plan.append((key, name, selection, definition, sub, named, abstract))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                if self._applies(condition, concrete):
                    self._compile(selection.selection_set.selections, concrete, plan)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if self._applies(fragment.type_condition.name.value, concrete):
                    self._compile(fragment.selection_set.selections, concrete, plan)

    def object(self, value: Any, selections, gql_type, root: bool = False) -> Any:
        abstract = not root and isinstance(gql_type, GraphQLAbstractType)
        return self._project(value, selections, gql_type, abstract)

    def _project(self, value: Any, selections, declared, abstract: bool) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self._project(v, selections, declared, abstract) for v in value]
        concrete = self._concrete(value, declared) if abstract else declared
        out: dict = {}
        for key, name, node, definition, sub, named, sub_abstract in self._plan(selections, concrete):
            if name is None:
                out[key] = concrete.name
                continue
            result = value.get(name)
            if callable(result):
                result = result(None, **get_argument_values(definition, node, self.variables))
            if sub is None:
                out[key] = result
                continue
            projected = self._project(result, sub, named, sub_abstract)
            if key in out and isinstance(out[key], dict) and isinstance(projected, dict):
                out[key].update(projected)  # the same field selected twice (a fragment and the query): merged
            else:
                out[key] = projected
        return out
