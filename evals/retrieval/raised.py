"""The second corpus: twelve causes raised the way other libraries and services word them.

Each family is one cause (the database refuses connections, a file is missing, ...). Each
of its variants is a separate playbook whose python step fails the way a different
library or service reports that cause: where the failure can be produced on any machine
it really happens (a connection to a closed port, a missing file, a missing key, a bad
number, a division by zero); where it needs an outside service (an API rejecting a token,
a full disk, a Java heap) the step raises the error that service would return. These
causes sit closer together than the first corpus's (timeouts and rate limits, missing and
unwritable files, DNS failures and refused connections), and their wordings come from
other ecosystems (JDBC, boto, pydantic, TensorFlow, Java).
"""

from __future__ import annotations

from evals.retrieval.corpus import Family, Variant, python


def _variant(path: str, step: str, description: str, body: str) -> Variant:
    return Variant(path, step, description, python(body))


def _raise(kind: str, message: str) -> str:
    return f"    raise {kind}({message!r})"


def _custom(kind: str, message: str) -> str:
    return f"    class {kind}(Exception):\n        pass\n    raise {kind}({message!r})"


RAISED_FAMILIES = [
    Family(
        "database_refused",
        [
            _variant(
                "etl/load_orders",
                "load",
                "Load yesterday's orders into the warehouse",
                "    import socket\n    socket.create_connection(('127.0.0.1', 1), timeout=5)",
            ),
            _variant(
                "etl/sync_customers",
                "copy_table",
                "Copy the customer table to the reporting replica",
                _custom(
                    "OperationalError",
                    'connection to server at "10.0.0.5", port 5432 failed: Is the server '
                    "running on that host and accepting TCP/IP connections?",
                ),
            ),
            _variant(
                "finance/ledger_export",
                "extract",
                "Export the general ledger for the month",
                _raise(
                    "ConnectionError",
                    "ECONNREFUSED: the warehouse at db.internal:5432 is not accepting connections",
                ),
            ),
            _variant(
                "etl/refresh_marts",
                "refresh",
                "Refresh the data marts in the warehouse",
                _custom(
                    "PSQLException",
                    "Connection to localhost:5432 refused. Check that the hostname and port "
                    "are correct and that the postmaster is accepting TCP/IP connections.",
                ),
            ),
        ],
        [
            "cannot reach the database",
            "postgres is not accepting connections",
            "the warehouse database is down",
        ],
    ),
    Family(
        "missing_file",
        [
            _variant(
                "files/import_sales",
                "read_csv",
                "Import the daily sales CSV export",
                "    open('/data/incoming/sales_2026-11-30.csv').read()",
            ),
            _variant(
                "files/ingest_exports",
                "list_inputs",
                "Ingest the partner exports from object storage",
                _raise("IOError", "input path s3://bucket/exports/2026-11-30/ does not exist"),
            ),
            _variant(
                "ml/train_churn",
                "load_features",
                "Train the churn model on the latest features",
                _raise(
                    "RuntimeError",
                    "source file features.parquet was not found in the landing folder",
                ),
            ),
            _variant(
                "retail/load_prices",
                "read_feed",
                "Read the supplier price feed",
                _custom("NoSuchFileException", "/srv/feeds/prices.xml"),
            ),
        ],
        [
            "the input file is missing",
            "no such file for the daily export",
            "could not find the source file",
        ],
    ),
    Family(
        "missing_field",
        [
            _variant(
                "api/enrich_users",
                "enrich",
                "Enrich user records with CRM attributes",
                "    record = {'id': 1, 'name': 'Ann'}\n    return record['customer_id']",
            ),
            _variant(
                "etl/orders_to_lake",
                "validate",
                "Validate and land orders in the data lake",
                _raise("ValueError", "record is missing required field 'order_id'"),
            ),
            _variant(
                "crm/merge_contacts",
                "merge",
                "Merge duplicate contacts in the CRM",
                _raise("LookupError", "column email not present in the input row"),
            ),
            _variant(
                "api/ingest_orders",
                "check",
                "Check incoming webhook orders",
                _custom(
                    "ValidationError",
                    "1 validation error for Order\ncustomer\n  field required "
                    "(type=value_error.missing)",
                ),
            ),
        ],
        [
            "a required field is absent from the record",
            "missing key in the data",
            "the data is missing a column",
        ],
    ),
    Family(
        "bad_number",
        [
            _variant(
                "finance/parse_invoices",
                "parse",
                "Parse invoice amounts from the supplier feed",
                "    return int('12 EUR')",
            ),
            _variant(
                "reports/kpi_rollup",
                "cast",
                "Roll up the weekly KPIs",
                "    return float('N/A')",
            ),
            _variant(
                "retail/price_update",
                "normalise",
                "Normalise shop prices before publishing",
                _raise("TypeError", "expected a numeric amount but got the text 'twelve'"),
            ),
            _variant(
                "finance/fx_rates",
                "convert",
                "Convert prices with today's exchange rates",
                _custom("NumberFormatException", 'For input string: "3,50"'),
            ),
        ],
        [
            "bad number format in the input",
            "text where a number was expected",
            "could not parse the amount as a number",
        ],
    ),
    Family(
        "division_by_zero",
        [
            _variant(
                "reports/margins",
                "compute",
                "Compute product margins per region",
                "    revenue, units = 120.0, 0\n    return revenue / units",
            ),
            _variant(
                "reports/averages",
                "average",
                "Average basket size per store",
                "    baskets = []\n    return sum(baskets) // len(baskets)",
            ),
            _variant(
                "ml/normalise_scores",
                "scale",
                "Scale model scores to the unit interval",
                _raise(
                    "ArithmeticError",
                    "cannot compute the ratio for an empty group: the denominator is 0",
                ),
            ),
            _variant(
                "ml/feature_ratios",
                "ratios",
                "Derive ratio features for the model",
                _raise("FloatingPointError", "divide by zero encountered in divide"),
            ),
        ],
        [
            "divided by zero",
            "an empty group made the average fail",
            "zero denominator in a calculation",
        ],
    ),
    Family(
        "permission_denied",
        [
            _variant(
                "reports/write_pdf",
                "save",
                "Render the monthly report as PDF",
                _raise("PermissionError", "[Errno 13] Permission denied: '/var/reports/out.pdf'"),
            ),
            _variant(
                "files/publish_exports",
                "publish",
                "Publish the exports to the shared mount",
                _raise("OSError", "[Errno 30] Read-only file system: '/mnt/export/report.csv'"),
            ),
            _variant(
                "finance/archive",
                "archive",
                "Archive closed periods to the finance share",
                _raise(
                    "RuntimeError",
                    "access denied when writing to the shared folder //fs01/finance",
                ),
            ),
            _variant(
                "files/rotate_logs",
                "rotate",
                "Rotate and compress the job logs",
                _raise(
                    "OSError", "[Errno 1] Operation not permitted: '/srv/shared/locks/run.lock'"
                ),
            ),
        ],
        [
            "not allowed to write the output file",
            "permission problem on the export folder",
            "access to the folder was denied",
        ],
    ),
    Family(
        "auth_rejected",
        [
            _variant(
                "api/fetch_invoices",
                "fetch",
                "Fetch invoices from the billing API",
                _custom("HTTPError", "401 Client Error: Unauthorized for url: /v2/invoices"),
            ),
            _variant(
                "api/sync_tickets",
                "pull",
                "Pull support tickets from the helpdesk",
                _custom("HTTPError", "403 Forbidden: the access token has expired"),
            ),
            _variant(
                "crm/export_leads",
                "login",
                "Export new leads from the CRM",
                _raise(
                    "RuntimeError",
                    "authentication failed: the credentials for the CRM were rejected",
                ),
            ),
            _variant(
                "cloud/assume_role",
                "identity",
                "Check the cloud identity before the deployment",
                _custom(
                    "ClientError",
                    "An error occurred (InvalidClientTokenId) when calling the "
                    "GetCallerIdentity operation: The security token included in the "
                    "request is invalid.",
                ),
            ),
        ],
        ["login to the API failed", "expired or invalid token", "the credentials are wrong"],
    ),
    Family(
        "rate_limited",
        [
            _variant(
                "api/geocode",
                "geocode",
                "Geocode new customer addresses",
                _custom("HTTPError", "429 Too Many Requests"),
            ),
            _variant(
                "marketing/send_emails",
                "send",
                "Send the campaign emails",
                _raise("RuntimeError", "rate limit exceeded: retry after 60 seconds"),
            ),
            _variant(
                "api/translate",
                "translate",
                "Translate product descriptions",
                _custom("QuotaExceeded", "daily API quota exhausted for project catalog-sync"),
            ),
            _variant(
                "cloud/stream_clicks",
                "put_records",
                "Push click records to the stream",
                _custom(
                    "ClientError",
                    "An error occurred (ThrottlingException) when calling the PutRecords "
                    "operation (reached max retries: 4): Rate exceeded",
                ),
            ),
        ],
        ["too many requests to the API", "hit the API quota", "we are being throttled"],
    ),
    Family(
        "timed_out",
        [
            _variant(
                "api/weather",
                "download",
                "Download the weather forecast",
                _raise("TimeoutError", "read timed out after 30 seconds"),
            ),
            _variant(
                "ml/score_batch",
                "predict",
                "Score the batch with the model service",
                _custom(
                    "DeadlineExceeded",
                    "deadline exceeded while waiting for the upstream response",
                ),
            ),
            _variant(
                "reports/big_query",
                "query",
                "Run the yearly aggregate query",
                _custom(
                    "QueryCanceled",
                    "canceling statement due to statement timeout (300 s)",
                ),
            ),
            _variant(
                "reports/nightly_cube",
                "build_cube",
                "Build the nightly sales cube",
                _raise(
                    "RuntimeError",
                    "the job did not finish within its 15 minute limit and was stopped",
                ),
            ),
        ],
        [
            "the call took too long and timed out",
            "request exceeded its time limit",
            "the job ran out of time",
        ],
    ),
    Family(
        "disk_full",
        [
            _variant(
                "files/unpack",
                "unzip",
                "Unpack the vendor archive",
                _raise("OSError", "[Errno 28] No space left on device"),
            ),
            _variant(
                "etl/stage_events",
                "stage",
                "Stage raw events before loading",
                _raise("OSError", "disk quota exceeded for user etl"),
            ),
            _variant(
                "ml/cache_embeddings",
                "cache",
                "Cache embeddings for the recommender",
                _raise(
                    "RuntimeError",
                    "cannot write the temporary file: the volume /tmp is full",
                ),
            ),
            _variant(
                "files/snapshot",
                "snapshot",
                "Snapshot the shared drive",
                _raise("RuntimeError", "write failed: the storage volume has 0 bytes available"),
            ),
        ],
        ["the disk is full", "ran out of storage space", "no free space on the volume"],
    ),
    Family(
        "out_of_memory",
        [
            _variant(
                "ml/train_big",
                "fit",
                "Fit the large similarity matrix",
                _raise(
                    "MemoryError",
                    "Unable to allocate 12.0 GiB for an array with shape (40000, 40000)",
                ),
            ),
            _variant(
                "etl/join_events",
                "join",
                "Join click events with sessions",
                _raise("RuntimeError", "the worker was killed by the OOM killer"),
            ),
            _variant(
                "reports/spark_rollup",
                "rollup",
                "Roll up sales in the cluster job",
                _custom("JavaError", "java.lang.OutOfMemoryError: Java heap space"),
            ),
            _variant(
                "ml/train_vision",
                "train",
                "Train the image classifier on the GPU",
                _custom(
                    "ResourceExhaustedError",
                    "OOM when allocating tensor with shape[8192,8192] and type float",
                ),
            ),
        ],
        [
            "ran out of memory",
            "process killed for using too much RAM",
            "not enough memory for the job",
        ],
    ),
    Family(
        "dns_failure",
        [
            _variant(
                "api/partner_feed",
                "connect",
                "Read the partner product feed",
                _custom("gaierror", "[Errno -2] Name or service not known"),
            ),
            _variant(
                "api/shipping_rates",
                "rates",
                "Fetch shipping rates from the carrier",
                _raise("RuntimeError", "getaddrinfo ENOTFOUND api.carrier.example"),
            ),
            _variant(
                "files/vendor_sftp",
                "sftp",
                "Collect files from the vendor SFTP server",
                _raise("ConnectionError", "could not resolve host: files.vendor.example"),
            ),
            _variant(
                "etl/push_metrics",
                "push",
                "Push daily metrics to the monitoring service",
                _custom(
                    "UnknownHostException",
                    "warehouse.corp.example: Temporary failure in name resolution",
                ),
            ),
        ],
        [
            "hostname could not be resolved",
            "DNS lookup failure",
            "the server name does not exist in DNS",
        ],
    ),
]
