"""Structured output and tool calls through the official `openai` client
against an OpenAI-compatible server on 127.0.0.1 (`infer serve`, or
llama.cpp's `llama-server` for comparison): a table of JSON schemas of the
shapes users send in `response_format` (each at temperature 0 and 0.8), and
a table of tool-call requests (`required`, a named function, `auto`,
`parallel_tool_calls` on and off), each sent unstreamed and streamed.

A schema case passes when the reply ends with `finish_reason` "stop", its
content parses as JSON, validates against the schema (jsonschema, Draft
2020-12, with `date`, `date-time`, `uuid` and `email` checked), and no object
in it has a key outside its schema's `properties` where the schema gives
`properties` and no `additionalProperties`. A tool case passes when the calls
(their number, names, arguments validated against the tool's parameters the
same way), the content and the finish reason are what the request asks for.
Which tool a model picks when it may pick any (`required`, `auto`) is its
judgement, not the server's: a case's expected tool (`call_name`) is checked
only for a named `tool_choice`, and for the others counted apart (`LABEL tool
picks: K/M as expected`). Under `auto` a text answer the model runs to
`max_tokens` ends with `length`, which is the right finish reason for text.

Usage: structured_suite.py BASE_URL LABEL [--report-only] [--json OUT.json]
                           [--threads 4] [--only schemas|tools] [--timeout S]
                           [--case SUBSTR]
       structured_suite.py --self-test    (checks the tables; no server)

Prints one line per failing case, then `LABEL schemas: P/N passed`,
`LABEL tools: P/N passed`, `LABEL tool picks: K/M as expected` and `N passed, 0 failed` (or `P passed, F failed`).
Exits 1 when a case failed, unless --report-only.
"""

import argparse
import concurrent.futures
import datetime
import json
import re
import sys
import uuid

import jsonschema
import openai
from openai import OpenAI

SEED = 1234
MAX_TOKENS = 400
TEMPERATURES = (0, 0.8)

# ---------------------------------------------------------------- schema cases
# Each: name, schema (None for json_object mode), strict (True / False /
# absent), user message, optional system message.


def case(name, schema, user, system=None, strict=None):
    c = {"name": name, "schema": schema, "user": user}
    if system is not None:
        c["system"] = system
    if strict is not None:
        c["strict"] = strict
    return c


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}


def obj(props, required=None, **extra):
    s = {"type": "object", "properties": props}
    if required is not None:
        s["required"] = required
    s.update(extra)
    return s


def arr(items, **extra):
    s = {"type": "array", "items": items}
    s.update(extra)
    return s


SCHEMA_CASES = [
    # The two cases of the bug report, verbatim.
    case("town_bug",
         {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                           "population": {"type": "integer", "minimum": 0}},
          "required": ["city", "population"]},
         "Answer in JSON about a small town.", strict=True),
    case("colors_bug",
         obj({"colors": arr(STR, minItems=2, maxItems=4)}, ["colors"]),
         "List some colors as JSON."),

    case("recipe_pancakes",
         obj({"name": STR,
              "servings": {"type": "integer", "minimum": 1, "maximum": 12},
              "ingredients": arr(obj({"item": STR, "quantity": STR}, ["item", "quantity"]), minItems=1),
              "steps": arr(STR, minItems=1)},
             ["name", "ingredients", "steps"]),
         "Give me a recipe for pancakes as JSON."),
    case("product_listing",
         obj({"store": STR,
              "products": arr(obj({"name": STR,
                                   "price": {"type": "number", "minimum": 0},
                                   "in_stock": BOOL,
                                   "category": {"type": "string", "enum": ["phones", "laptops", "audio", "accessories"]}},
                                  ["name", "price", "in_stock"]),
                              minItems=1, maxItems=5)},
             ["products"]),
         "List three products for an online electronics store as JSON."),
    case("person_address",
         obj({"name": STR,
              "age": {"type": "integer", "minimum": 0, "maximum": 130},
              "address": obj({"street": STR, "city": STR, "postal_code": STR, "country": STR},
                             ["street", "city", "country"])},
             ["name", "address"]),
         "Describe a fictional person with their home address as JSON."),
    case("event_date",
         obj({"title": STR, "date": {"type": "string", "format": "date"}, "location": STR,
              "attendees": {"type": "integer", "minimum": 0}},
             ["title", "date"]),
         "Create a calendar event for a team meeting next month, as JSON."),
    case("todo_list",
         obj({"title": STR,
              "items": arr(obj({"task": STR, "done": BOOL,
                                "priority": {"type": "string", "enum": ["low", "medium", "high"]}},
                               ["task", "done"]))},
             ["title", "items"]),
         "Make me a todo list for moving house, in JSON.",
         system="You are a helpful productivity assistant."),
    case("sentiment",
         obj({"sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
              "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
             ["sentiment", "confidence"]),
         "I absolutely loved the new cafe downtown, the coffee was amazing!",
         system="Classify the sentiment of the user's message. Reply in JSON.", strict=False),
    case("weather_report",
         obj({"city": STR,
              "temperature_c": {"type": "number", "minimum": -90, "maximum": 60},
              "conditions": {"type": "string", "enum": ["sunny", "cloudy", "rainy", "snowy", "windy"]},
              "humidity": {"type": "integer", "minimum": 0, "maximum": 100},
              "wind_kph": {"type": "number", "minimum": 0}},
             ["city", "temperature_c", "conditions"]),
         "Give a weather report for Madrid as JSON."),
    case("book_authors",
         obj({"title": STR,
              "authors": arr(STR, minItems=1),
              "year": {"type": "integer", "minimum": 1450, "maximum": 2030},
              "isbn": STR,
              "genres": arr(STR)},
             ["title", "authors", "year"]),
         "Describe the book 'Good Omens' as JSON."),
    case("json_mode_cat", None,
         "Return a JSON object describing a cat with its name and age.",
         system="You reply only with JSON."),
    case("strict_user_profile",
         obj({"username": {"type": "string", "maxLength": 20},
              "active": BOOL,
              "roles": arr({"type": "string", "enum": ["admin", "editor", "viewer"]}, minItems=1, maxItems=3)},
             ["username", "active", "roles"], additionalProperties=False),
         "Create a user profile for a new editor called sam, as JSON.", strict=True),
    case("movie_stars_int_enum",
         obj({"movie": STR, "stars": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}, ["movie", "stars"]),
         "Rate the movie Inception from 1 to 5 stars, as JSON."),
    case("nickname_or_null",
         obj({"name": STR, "nickname": {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]}},
             ["name", "nickname"]),
         "Give the name and the nickname (null if they have none) of a famous musician as JSON."),
    case("shape_anyof",
         obj({"shape": {"anyOf": [
             obj({"kind": {"const": "circle"}, "radius": {"type": "number", "exclusiveMinimum": 0}},
                 ["kind", "radius"]),
             obj({"kind": {"const": "rectangle"}, "width": {"type": "number", "exclusiveMinimum": 0},
                  "height": {"type": "number", "exclusiveMinimum": 0}},
                 ["kind", "width", "height"])]}},
             ["shape"]),
         "Describe a geometric shape as JSON."),
    case("order_addresses_ref",
         {"$defs": {"address": obj({"street": STR, "city": STR, "zip": STR}, ["street", "city"])},
          "type": "object",
          "properties": {"order_id": STR,
                         "billing": {"$ref": "#/$defs/address"},
                         "shipping": {"$ref": "#/$defs/address"}},
          "required": ["order_id", "billing", "shipping"]},
         "Give an online order's id with its billing and shipping addresses as JSON."),
    case("team_members_ref_array",
         {"$defs": {"member": obj({"name": STR,
                                   "role": {"type": "string", "enum": ["developer", "designer", "manager", "tester"]}},
                                  ["name", "role"])},
          "type": "object",
          "properties": {"team": STR,
                         "members": {"type": "array", "items": {"$ref": "#/$defs/member"}, "minItems": 1, "maxItems": 5}},
          "required": ["team", "members"]},
         "Describe a small software team as JSON."),
    case("customer_record_uuid",
         obj({"id": {"type": "string", "format": "uuid"}, "name": STR,
              "created_at": {"type": "string", "format": "date-time"}},
             ["id", "name", "created_at"]),
         "Create a database record for a new customer as JSON, with an id and a creation timestamp."),
    case("plumber_contact_email",
         obj({"name": STR, "email": {"type": "string", "format": "email"}, "phone": STR},
             ["name", "email"]),
         "Give me the contact details of a fictional plumber as JSON."),
    case("sensor_readings_numbers",
         obj({"sensor": STR, "unit": {"type": "string", "enum": ["C", "F"]},
              "readings": arr(NUM, minItems=3, maxItems=10)},
             ["unit", "readings"]),
         "Give some temperature sensor readings as JSON."),
    case("moon_landing_int_ranges",
         obj({"year": {"type": "integer", "minimum": 1900, "maximum": 2100},
              "month": {"type": "integer", "minimum": 1, "maximum": 12},
              "day": {"type": "integer", "minimum": 1, "maximum": 31}},
             ["year", "month", "day"]),
         "When was the first moon landing? Answer as JSON with year, month and day."),
    case("coffee_shop_booleans",
         obj({"name": STR, "is_open": BOOL, "has_wifi": BOOL, "accepts_cards": BOOL},
             ["name", "is_open", "has_wifi", "accepts_cards"]),
         "Tell me about a coffee shop as JSON."),
    case("service_status_const",
         obj({"version": {"const": "1.0"},
              "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
              "message": {"type": "string", "maxLength": 80}},
             ["version", "status"]),
         "Report the status of a web service as JSON.", strict=False),
    case("product_code_lengths",
         obj({"code": {"type": "string", "minLength": 4, "maxLength": 8},
              "title": {"type": "string", "minLength": 3, "maxLength": 30}},
             ["code", "title"]),
         "Invent a product code and a short product title as JSON."),
    case("coffee_price_currency_pattern",
         obj({"currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
              "amount": {"type": "number", "minimum": 0}},
             ["currency", "amount"]),
         "How much does a cup of coffee cost in Japan? Answer as JSON with the currency code and the amount."),
    case("company_nested_3_levels",
         obj({"company": obj({"name": STR,
                              "founded": {"type": "integer", "minimum": 1800, "maximum": 2030},
                              "headquarters": obj({"city": STR, "country": STR,
                                                   "coordinates": obj({"lat": {"type": "number", "minimum": -90, "maximum": 90},
                                                                       "lon": {"type": "number", "minimum": -180, "maximum": 180}})},
                                                  ["city", "country"])},
                             ["name", "headquarters"]),
              "employees": {"type": "integer", "minimum": 1}},
             ["company"]),
         "Describe a well-known technology company as JSON."),
    case("trivia_question",
         obj({"question": STR, "options": arr(STR, minItems=4, maxItems=4),
              "answer_index": {"type": "integer", "minimum": 0, "maximum": 3}},
             ["question", "options", "answer_index"]),
         "Write a multiple-choice trivia question as JSON."),
    case("flight_booking",
         obj({"from": {"type": "string", "pattern": "^[A-Z]{3}$"},
              "to": {"type": "string", "pattern": "^[A-Z]{3}$"},
              "date": {"type": "string", "format": "date"},
              "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
              "class": {"type": "string", "enum": ["economy", "business", "first"]}},
             ["from", "to", "date", "passengers"]),
         "Book me a flight from London to New York for two people on a day in June.",
         system="You are a travel agent. Respond in JSON."),
    case("film_optional_keys",
         obj({"title": STR, "director": STR, "year": INT,
              "rating": {"type": "number", "minimum": 0, "maximum": 10}, "tags": arr(STR, maxItems=5)},
             ["title"]),
         "Tell me about a classic film as JSON."),
    case("bread_price_exclusive_min",
         obj({"item": STR, "price": {"type": "number", "exclusiveMinimum": 0},
              "discount_percent": {"type": "number", "minimum": 0, "maximum": 100}},
             ["item", "price"]),
         "What is the price of a loaf of bread? Answer as JSON."),
    case("translation_enums",
         obj({"source_language": {"type": "string", "enum": ["en", "fr", "de", "es"]},
              "target_language": {"type": "string", "enum": ["en", "fr", "de", "es"]},
              "text": STR, "translation": STR},
             ["source_language", "target_language", "translation"]),
         "Translate 'good morning' into French. Reply in JSON."),
    case("european_cities_objects",
         obj({"cities": arr(obj({"name": STR, "country": STR, "population": {"type": "integer", "minimum": 0}},
                                ["name", "country"]),
                            minItems=2, maxItems=3)},
             ["cities"]),
         "List two or three large European cities as JSON."),
    case("fruits_top_level_array",
         arr(STR, minItems=3, maxItems=5),
         "List three fruits as a JSON array."),
    case("log_entry_datetime",
         obj({"timestamp": {"type": "string", "format": "date-time"},
              "level": {"type": "string", "enum": ["DEBUG", "INFO", "WARN", "ERROR"]},
              "message": {"type": "string", "maxLength": 120},
              "context": obj({"service": STR, "request_id": {"type": "string", "format": "uuid"}}, ["service"])},
             ["timestamp", "level", "message"]),
         "Write a single log entry for a failed login attempt as JSON."),
    case("survey_nullable_int",
         obj({"respondent_age": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 120}, {"type": "null"}]},
              "satisfied": BOOL,
              "score": {"type": "integer", "minimum": 1, "maximum": 10},
              "comments": {"type": "string", "maxLength": 200}},
             ["satisfied", "score"]),
         "Fill in a customer satisfaction survey response as JSON."),
    case("payment_oneof",
         obj({"amount": {"type": "number", "exclusiveMinimum": 0},
              "payment": {"oneOf": [
                  obj({"method": {"const": "card"}, "last4": {"type": "string", "pattern": "^[0-9]{4}$"}},
                      ["method", "last4"]),
                  obj({"method": {"const": "paypal"}, "email": {"type": "string", "format": "email"}},
                      ["method", "email"])]}},
             ["amount", "payment"]),
         "Record a payment for a 25 dollar purchase as JSON."),
    case("folder_tree_recursive_ref",
         {"$defs": {"node": obj({"name": STR,
                                 "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 3}},
                                ["name"])},
          "$ref": "#/$defs/node"},
         "Show a small project folder structure as a JSON tree."),
    case("invoice_strict",
         obj({"invoice_number": {"type": "string", "pattern": "^INV-[0-9]{4}$"},
              "issued": {"type": "string", "format": "date"},
              "lines": arr(obj({"description": STR, "quantity": {"type": "integer", "minimum": 1},
                                "unit_price": {"type": "number", "minimum": 0}},
                               ["description", "quantity", "unit_price"], additionalProperties=False),
                           minItems=1, maxItems=4),
              "paid": BOOL},
             ["invoice_number", "issued", "lines", "paid"], additionalProperties=False),
         "Write an invoice for two hours of consulting as JSON.", strict=True),
]

# ---------------------------------------------------------------- tool cases

GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two numbers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
            "required": ["a", "b"],
        },
    },
}
SEARCH_WEB = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web and return the top results",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}
ALL_TOOLS = [GET_WEATHER, ADD, SEARCH_WEB]
NAMED = lambda name: {"type": "function", "function": {"name": name}}  # noqa: E731


def tcase(name, user, tool_choice, expect, tools=None, parallel=None, system=None, call_name=None):
    """expect: "one" (exactly one call, finish tool_calls), "some" (>= 1 call,
    none identical, finish tool_calls), "auto_call_or_text" (tool_calls with
    >= 1 valid call, or stop with text), "auto_any" (stop with text or
    tool_calls with valid calls). call_name: every call must name it."""
    c = {"name": name, "user": user, "tool_choice": tool_choice, "expect": expect,
         "tools": tools or [GET_WEATHER, ADD]}
    if parallel is not None:
        c["parallel_tool_calls"] = parallel
    if system is not None:
        c["system"] = system
    if call_name is not None:
        c["call_name"] = call_name
    return c


TOOL_REQUESTS = [
    tcase("required_weather_paris", "What is the weather in Paris?", "required", "one", call_name="get_weather"),
    tcase("named_add", "What is 2 plus 3?", NAMED("add"), "one", call_name="add"),
    tcase("required_no_parallel_two_cities", "What is the weather in Paris and in London?", "required", "one",
          parallel=False),
    tcase("required_parallel_two_cities", "What is the weather in Paris and in London?", "required", "some",
          parallel=True),
    tcase("auto_weather_berlin", "What is the weather in Berlin?", "auto", "auto_call_or_text"),
    tcase("auto_greeting", "Hi! How are you today?", "auto", "auto_any"),
    tcase("named_add_parallel", "What is 2 plus 3, and what is 10 plus 20?", NAMED("add"), "some",
          parallel=True, call_name="add"),
    tcase("required_search_three_tools", "Search the web for the latest news about the James Webb telescope.",
          "required", "one", tools=ALL_TOOLS, call_name="search_web"),
    tcase("named_weather_fahrenheit", "What's the weather in Tokyo, in fahrenheit?", NAMED("get_weather"), "one",
          tools=ALL_TOOLS, call_name="get_weather"),
    tcase("required_add_system", "What is 12.5 plus 7.25?", "required", "one", tools=ALL_TOOLS,
          system="You are a helpful assistant. Use the tools to answer.", call_name="add"),
]
TOOL_CASES = [dict(r, name=f"{r['name']}/{'stream' if s else 'plain'}", stream=s)
              for r in TOOL_REQUESTS for s in (False, True)]

# ---------------------------------------------------------------- checking

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")  # RFC 5321: a one-label domain is an address too
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date", raises=ValueError)
def _is_date(v):
    return not isinstance(v, str) or (bool(DATE_RE.match(v)) and bool(datetime.date.fromisoformat(v)))


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(v):
    if not isinstance(v, str):
        return True
    # RFC 3339: a full date, "T", a time and an offset.
    if not DATETIME_RE.match(v):
        return False
    s = v[:-1] + "+00:00" if v[-1] in "Zz" else v
    datetime.datetime.fromisoformat(s)
    return True


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(v):
    return not isinstance(v, str) or (len(v) == 36 and bool(uuid.UUID(v)))


@FORMATS.checks("email")
def _is_email(v):
    return not isinstance(v, str) or bool(EMAIL_RE.match(v))


def _path(path, key):
    return f"{path}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)) else f"{path}[{json.dumps(key)}]"


def _resolve(ref, root):
    if not ref.startswith("#"):
        raise ValueError(f"unsupported $ref {ref}")
    node = root
    for part in ref[1:].split("/")[1:] if ref != "#" else []:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def extra_keys(value, schema, root, path="$"):
    """None, or where the value has a key outside the properties of a schema
    object that lists `properties` and no `additionalProperties`."""
    if not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        r = extra_keys(value, _resolve(schema["$ref"], root), root, path)
        if r:
            return r
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errs = [extra_keys(value, b, root, path) for b in schema[key]]
            if all(errs):
                return errs[0]
    if "allOf" in schema:
        # The branches' properties together are the object's keys.
        names = set(schema.get("properties", {}))
        for b in schema["allOf"]:
            names |= set(b.get("properties", {})) if isinstance(b, dict) else set()
        for b in schema["allOf"]:
            if isinstance(b, dict) and "properties" in b and "additionalProperties" not in b:
                b = dict(b, properties={**{n: True for n in names}, **b["properties"]})
            r = extra_keys(value, b, root, path)
            if r:
                return r
    if isinstance(value, dict):
        props = schema.get("properties")
        pattern_props = schema.get("patternProperties", {})
        ap = schema.get("additionalProperties")
        for k, v in value.items():
            p = _path(path, k)
            if props is not None and k in props:
                r = extra_keys(v, props[k], root, p)
            elif any(re.search(pat, k) for pat in pattern_props):
                r = next(extra_keys(v, s, root, p) for pat, s in pattern_props.items() if re.search(pat, k))
            elif props is not None and "additionalProperties" not in schema and not pattern_props:
                return f"extra key {k!r} at {path}"
            elif isinstance(ap, dict):
                r = extra_keys(v, ap, root, p)
            else:
                r = None
            if r:
                return r
    if isinstance(value, list):
        prefix = schema.get("prefixItems", [])
        items = schema.get("items")
        for i, v in enumerate(value):
            s = prefix[i] if i < len(prefix) else items
            r = extra_keys(v, s, root, f"{path}[{i}]")
            if r:
                return r
    return None


def check_value(value, schema):
    """None if the value validates against the schema and has no extra keys, else why not."""
    err = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema, format_checker=FORMATS).iter_errors(value))
    if err is not None:
        return f"invalid: {err.message} (at {err.json_path})"
    return extra_keys(value, schema, schema)


class DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise DuplicateKey(f"duplicate key {k!r} in an object")
        seen.add(k)
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_json(text):
    """(value, None) or (None, why not): strict JSON, no NaN/Infinity, no key twice in an object."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant), None
    except DuplicateKey as e:
        return None, str(e)
    except ValueError as e:
        return None, f"not JSON: {e}"


def api_error(e):
    if isinstance(e, openai.APIStatusError):
        body = e.body if isinstance(e.body, dict) else {}
        msg = body.get("message") or (body.get("error") or {}).get("message") if body else None
        return f"HTTP {e.status_code}: {msg or e.message}"
    if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError)):
        return f"request failed: {type(e).__name__}: {e}"
    return f"error: {type(e).__name__}: {e}"


def messages_of(c):
    m = [{"role": "system", "content": c["system"]}] if "system" in c else []
    return m + [{"role": "user", "content": c["user"]}]


def run_schema(client, c, temperature):
    res = {"name": c["name"], "kind": "schemas", "temperature": temperature, "ok": False, "reason": "",
           "finish_reason": None, "completion_tokens": None, "content": None}
    if c["schema"] is None:
        fmt, schema = {"type": "json_object"}, {"type": "object"}
    else:
        js = {"name": c["name"], "schema": c["schema"]}
        if "strict" in c:
            js["strict"] = c["strict"]
        fmt, schema = {"type": "json_schema", "json_schema": js}, c["schema"]
    try:
        r = client.chat.completions.create(model="m", messages=messages_of(c), response_format=fmt,
                                           temperature=temperature, seed=SEED, max_tokens=MAX_TOKENS)
    except Exception as e:  # noqa: BLE001 - every failure is a result
        res["reason"] = api_error(e)
        return res
    if not r.choices:
        res["reason"] = "no choices in the reply"
        return res
    ch = r.choices[0]
    content = ch.message.content
    res.update(finish_reason=ch.finish_reason, content=content,
               completion_tokens=r.usage.completion_tokens if r.usage else None)
    if ch.finish_reason != "stop":
        res["reason"] = f"finish_reason {ch.finish_reason}"
        return res
    if content is None:
        res["reason"] = "content is null"
        return res
    value, why = parse_json(content)
    if why is None:
        why = check_value(value, schema)
    if why:
        res["reason"] = why
        return res
    res["ok"] = True
    return res


def stream_tool_reply(client, **kw):
    """(content, calls [{id, name, arguments}] by index, last finish_reason, usage, protocol problem or None)."""
    content, calls, finish, usage, problem = "", {}, None, None, None
    for chunk in client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            d = ch.delta
            if d is not None:
                if d.content:
                    content += d.content
                for tc in d.tool_calls or []:
                    call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                    if tc.id:
                        if call["id"] and call["id"] != tc.id and problem is None:
                            problem = f"call {tc.index}: a later delta changes the id {call['id']} to {tc.id}"
                        call["id"] = tc.id
                    fn = tc.function
                    if fn is not None:
                        if fn.name:
                            if call["name"] and call["name"] != fn.name and problem is None:
                                problem = f"call {tc.index}: a later delta changes the name {call['name']} to {fn.name}"
                            call["name"] = call["name"] or fn.name
                        call["arguments"] += fn.arguments or ""
            if ch.finish_reason:
                finish = ch.finish_reason
    ordered = [calls[i] for i in sorted(calls)]
    if sorted(calls) != list(range(len(calls))) and problem is None:
        problem = f"call indexes {sorted(calls)} are not 0..{len(calls) - 1}"
    return content, ordered, finish, usage, problem


def check_calls(calls, tools, call_name):
    """None if every call names a given tool (call_name if set) with arguments
    that parse and validate, and ids are distinct; else why not."""
    by_name = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
    ids = [c["id"] for c in calls]
    if any(not i for i in ids):
        return "a call has no id"
    if len(set(ids)) != len(ids):
        return f"call ids are not distinct: {ids}"
    for i, c in enumerate(calls):
        name = c["name"]
        if name not in by_name:
            return f"call {i} names an unknown tool {name!r}"
        if call_name and name != call_name:
            return f"call {i} is {name}, expected {call_name}"
        args, why = parse_json(c["arguments"])
        if why:
            return f"call {i} {name} arguments {why}: {c['arguments'][:120]!r}"
        c["parsed"] = args
        why = check_value(args, by_name[name])
        if why:
            return f"call {i} {name} arguments {why}"
    return None


def run_tool(client, c):
    res = {"name": c["name"], "kind": "tools", "temperature": 0, "ok": False, "reason": "",
           "finish_reason": None, "completion_tokens": None, "content": None, "tool_calls": None}
    kw = dict(model="m", messages=messages_of(c), tools=c["tools"], tool_choice=c["tool_choice"],
              temperature=0, max_tokens=MAX_TOKENS)
    if "parallel_tool_calls" in c:
        kw["parallel_tool_calls"] = c["parallel_tool_calls"]
    try:
        if c["stream"]:
            content, calls, finish, usage, problem = stream_tool_reply(client, **kw)
        else:
            r = client.chat.completions.create(**kw)
            if not r.choices:
                res["reason"] = "no choices in the reply"
                return res
            msg = r.choices[0].message
            content, finish, usage, problem = msg.content, r.choices[0].finish_reason, r.usage, None
            calls = []
            for tc in msg.tool_calls or []:
                if tc.type != "function" and problem is None:
                    problem = f"call type {tc.type!r}, expected 'function'"
                calls.append({"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments or ""})
    except Exception as e:  # noqa: BLE001
        res["reason"] = api_error(e)
        return res
    res.update(finish_reason=finish, content=content, completion_tokens=usage.completion_tokens if usage else None,
               tool_calls=[{k: v for k, v in x.items() if k != "parsed"} for x in calls])
    res["reason"] = tool_verdict(c, content, calls, finish, problem, res["completion_tokens"])
    res["ok"] = not res["reason"]
    if c.get("call_name") and not is_named(c) and calls:
        res["picked_expected"] = all(x["name"] == c["call_name"] for x in calls)
    return res


def is_named(c):
    return isinstance(c["tool_choice"], dict)


def tool_verdict(c, content, calls, finish, problem, completion_tokens=None):
    """'' when the reply is what the case asks for, else why not."""
    if problem:
        return problem
    if finish is None:
        return "no finish_reason"
    expect, text = c["expect"], (content or "")
    if finish == "length":
        text_at_budget = expect.startswith("auto") and not calls and text.strip() and completion_tokens == MAX_TOKENS
        return "" if text_at_budget else f"finish_reason length ({len(calls)} calls)"
    bad = check_calls(calls, c["tools"], c.get("call_name") if is_named(c) else None)
    if expect in ("one", "some"):
        if finish != "tool_calls":
            return f"finish_reason {finish}, expected tool_calls ({len(calls)} calls)"
        if not calls:
            return "no tool calls"
        if expect == "one" and len(calls) != 1:
            return f"{len(calls)} calls, expected exactly 1: " + "; ".join(f"{x['name']} {x['arguments']}" for x in calls)[:200]
        if bad:
            return bad
        if expect == "some":
            seen = set()
            for x in calls:
                key = (x["name"], json.dumps(x["parsed"], sort_keys=True))
                if key in seen:
                    return f"two identical calls: {x['name']} {x['arguments']}"
                seen.add(key)
        if text:
            return f"content {text[:80]!r} beside the calls, expected none"
        return ""
    # auto
    if finish == "tool_calls":
        if not calls:
            return "finish_reason tool_calls but no calls"
        return bad or ""
    if finish == "stop":
        if calls:
            return f"finish_reason stop with {len(calls)} calls"
        if not text.strip():
            return "finish_reason stop with empty content"
        return ""
    return f"finish_reason {finish}, expected stop or tool_calls"


# ---------------------------------------------------------------- self-test


def self_test():
    problems = []
    names = [c["name"] for c in SCHEMA_CASES] + [c["name"] for c in TOOL_CASES]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        problems.append(f"duplicate names {sorted(dup)}")
    if len(SCHEMA_CASES) < 32:
        problems.append(f"{len(SCHEMA_CASES)} schema cases, want >= 32")
    if len(TOOL_CASES) < 12:
        problems.append(f"{len(TOOL_CASES)} tool cases, want >= 12")
    for c in SCHEMA_CASES:
        if c["schema"] is not None:
            try:
                jsonschema.Draft202012Validator.check_schema(c["schema"])
            except jsonschema.SchemaError as e:
                problems.append(f"{c['name']}: schema invalid: {e.message}")
    for t in ALL_TOOLS:
        try:
            jsonschema.Draft202012Validator.check_schema(t["function"]["parameters"])
        except jsonschema.SchemaError as e:
            problems.append(f"tool {t['function']['name']}: parameters invalid: {e.message}")
    for c in TOOL_CASES:
        tool_names = {t["function"]["name"] for t in c["tools"]}
        tc = c["tool_choice"]
        if isinstance(tc, dict) and tc["function"]["name"] not in tool_names:
            problems.append(f"{c['name']}: tool_choice names a tool not given")
        if c.get("call_name") and c["call_name"] not in tool_names:
            problems.append(f"{c['name']}: call_name not among the tools")
    kinds = {"json_object": any(c["schema"] is None for c in SCHEMA_CASES),
             "strict true": any(c.get("strict") is True for c in SCHEMA_CASES),
             "strict absent": sum("strict" not in c for c in SCHEMA_CASES) >= 3}
    problems += [f"no {k} case" for k, v in kinds.items() if not v]
    bug = {c["name"]: c for c in SCHEMA_CASES}
    if bug["town_bug"]["schema"] != json.loads(
            '{"type":"object","properties":{"city":{"type":"string","maxLength":40},'
            '"population":{"type":"integer","minimum":0}},"required":["city","population"]}'):
        problems.append("town_bug is not the bug report's schema")
    # The checker itself, on values with known verdicts.
    town = bug["town_bug"]["schema"]
    tree = bug["folder_tree_recursive_ref"]["schema"]
    team = bug["team_members_ref_array"]["schema"]
    shape = bug["shape_anyof"]["schema"]
    rec = bug["customer_record_uuid"]["schema"]
    log = bug["log_entry_datetime"]["schema"]
    expect = [
        (town, {"city": "Ely", "population": 20000}, None),
        (town, {"city": "Ely", "population": 20000, "mayor": "x"}, "extra key 'mayor' at $"),
        (town, {"city": "Ely", "population": -1}, "invalid:"),
        (town, {"city": "Ely"}, "invalid:"),
        (tree, {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}, None),
        (tree, {"name": "a", "children": [{"name": "b", "children": [{"name": "c", "size": 1}]}]},
         "extra key 'size' at $.children[0].children[0]"),
        (team, {"team": "t", "members": [{"name": "a", "role": "tester", "age": 3}]},
         "extra key 'age' at $.members[0]"),
        (shape, {"shape": {"kind": "circle", "radius": 1}}, None),
        (shape, {"shape": {"kind": "circle", "radius": 1, "color": "red"}}, "extra key 'color' at $.shape"),
        (shape, {"shape": {"kind": "circle", "radius": 0}}, "invalid:"),
        (rec, {"id": "123e4567-e89b-12d3-a456-426614174000", "name": "n", "created_at": "2024-05-01T10:00:00Z"}, None),
        (rec, {"id": "123e4567e89b12d3a456426614174000", "name": "n", "created_at": "2024-05-01T10:00:00Z"}, "invalid:"),
        (rec, {"id": "123e4567-e89b-12d3-a456-426614174000", "name": "n", "created_at": "2024-05-01"}, "invalid:"),
        (rec, {"id": "123e4567-e89b-12d3-a456-426614174000", "name": "n", "created_at": "2024-13-01T10:00:00Z"}, "invalid:"),
        (bug["event_date"]["schema"], {"title": "t", "date": "2024-02-30"}, "invalid:"),
        (bug["event_date"]["schema"], {"title": "t", "date": "20240210"}, "invalid:"),
        (bug["plumber_contact_email"]["schema"], {"name": "n", "email": "bob at example"}, "invalid:"),
        (bug["plumber_contact_email"]["schema"], {"name": "n", "email": "bob@example.com"}, None),
        (bug["coffee_price_currency_pattern"]["schema"], {"currency": "yen", "amount": 3}, "invalid:"),
        (log, {"timestamp": "2024-05-01T10:00:00+02:00", "level": "WARN", "message": "m",
               "context": {"service": "auth", "request_id": "123e4567-e89b-12d3-a456-426614174000", "ip": "x"}},
         "extra key 'ip' at $.context"),
        (bug["nickname_or_null"]["schema"], {"name": "n", "nickname": None}, None),
    ]
    for schema, value, want in expect:
        got = check_value(value, schema)
        if (want is None) != (got is None) or (want and not got.startswith(want)):
            problems.append(f"checker on {json.dumps(value)}: got {got!r}, want {want!r}")
    for text, want in [('{"a": 1}', None), ('{"a": 1, "a": 2}', "duplicate key 'a'"), ('[1, NaN]', "not JSON"),
                       ('{"a": [{"b": 1, "b": 1}]}', "duplicate key 'b'"), ('{"a": 1', "not JSON"), ('{"a": 1} x', "not JSON")]:
        got = parse_json(text)[1]
        if (want is None) != (got is None) or (want and not got.startswith(want)):
            problems.append(f"parse_json({text!r}): got {got!r}, want {want!r}")
    # Tool verdicts on synthetic replies.
    one = next(c for c in TOOL_CASES if c["name"] == "required_weather_paris/plain")
    some = next(c for c in TOOL_CASES if c["name"] == "required_parallel_two_cities/plain")
    named = next(c for c in TOOL_CASES if c["name"] == "named_add/plain")
    call = lambda i, n, a: {"id": f"call_{i}", "name": n, "arguments": a}  # noqa: E731
    verdicts = [
        (one, None, [call(0, "get_weather", '{"city": "Paris"}')], "tool_calls", ""),
        (one, None, [call(0, "get_weather", '{"city": "Paris", "country": "FR"}')], "tool_calls", "call 0 get_weather arguments extra key"),
        (one, None, [call(0, "get_weather", '{"city": "Paris", "unit": "kelvin"}')], "tool_calls", "call 0 get_weather arguments invalid"),
        (one, None, [call(0, "add", '{"a": 1, "b": 2}')], "tool_calls", ""),
        (named, None, [call(0, "get_weather", '{"city": "Paris"}')], "tool_calls", "call 0 is get_weather"),
        (one, None, [call(0, "get_weather", '{"city": "Paris"}'), call(1, "get_weather", '{"city": "Lyon"}')], "tool_calls", "2 calls"),
        (one, None, [call(0, "get_weather", '{"city": ')], "length", "finish_reason length"),
        (one, None, [call(0, "get_weather", '{"city": ')], "tool_calls", "call 0 get_weather arguments not JSON"),
        (one, None, [call(0, "get_weather", '{"city": "A", "city": "B"}')], "tool_calls", "call 0 get_weather arguments duplicate"),
        (one, "Sure.", [call(0, "get_weather", '{"city": "Paris"}')], "tool_calls", "content"),
        (some, None, [call(0, "get_weather", '{"city": "Paris"}'), call(1, "get_weather", '{"city":"Paris"}')], "tool_calls", "two identical"),
        (some, None, [call(0, "get_weather", '{"city": "Paris"}'), call(1, "get_weather", '{"city": "London"}')], "tool_calls", ""),
    ]
    for c, content, calls, finish, want in verdicts:
        got = tool_verdict(c, content, [dict(x) for x in calls], finish, None)
        if (not want) != (not got) or (want and not got.startswith(want)):
            problems.append(f"tool verdict {calls} {finish}: got {got!r}, want {want!r}")
    greet = next(c for c in TOOL_CASES if c["name"] == "auto_greeting/plain")
    for content, tokens, want in [("Hi! I am fine.", MAX_TOKENS, ""), ("Hi!", 12, "finish_reason length"), ("", MAX_TOKENS, "finish_reason length")]:
        got = tool_verdict(greet, content, [], "length", None, tokens)
        if (not want) != (not got) or (want and not got.startswith(want)):
            problems.append(f"auto text verdict {content!r} at {tokens} tokens: got {got!r}, want {want!r}")
    for p in problems:
        print("self-test:", p)
    print(f"self-test: {len(SCHEMA_CASES)} schema cases ({len(SCHEMA_CASES) * len(TEMPERATURES)} runs), "
          f"{len(TOOL_CASES)} tool cases; {'ok' if not problems else f'{len(problems)} problems'}")
    return 0 if not problems else 1


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", nargs="?", help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("label", nargs="?", help="short model label for the summary")
    ap.add_argument("--report-only", action="store_true", help="exit 0 even when cases fail")
    ap.add_argument("--json", metavar="OUT.json", help="write the per-case results here")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--only", choices=["schemas", "tools"])
    ap.add_argument("--timeout", type=float, default=300, help="seconds per request")
    ap.add_argument("--case", metavar="SUBSTR", help="run only the cases whose name contains SUBSTR")
    ap.add_argument("--self-test", action="store_true", help="check the tables; needs no server")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.base or not args.label:
        ap.error("BASE_URL and LABEL are required")
    client = OpenAI(base_url=args.base.rstrip("/") + "/v1", api_key="none", max_retries=0, timeout=args.timeout)

    jobs = []
    if args.only in (None, "schemas"):
        jobs += [(run_schema, c, t) for c in SCHEMA_CASES for t in TEMPERATURES]
    if args.only in (None, "tools"):
        jobs += [(run_tool, c) for c in TOOL_CASES]
    if args.case:
        jobs = [j for j in jobs if args.case in j[1]["name"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.threads)) as pool:
        futures = [pool.submit(f, client, *a) for f, *a in jobs]
        results = [f.result() for f in futures]

    for r in results:
        if not r["ok"]:
            shown = r["content"] if r["content"] is not None else ""
            extra = f" calls {json.dumps(r['tool_calls'])[:300]}" if r.get("tool_calls") else ""
            print(f"FAIL {r['name']} t={r['temperature']}: {r['reason']} | content {shown[:300]!r}{extra}", flush=True)
    for kind in ("schemas", "tools"):
        rs = [r for r in results if r["kind"] == kind]
        if rs:
            print(f"{args.label} {kind}: {sum(r['ok'] for r in rs)}/{len(rs)} passed")
    picks = [r["picked_expected"] for r in results if "picked_expected" in r]
    if picks:
        print(f"{args.label} tool picks: {sum(picks)}/{len(picks)} as expected")
    passed = sum(r["ok"] for r in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 1 if failed and not args.report_only else 0


if __name__ == "__main__":
    sys.exit(main())
