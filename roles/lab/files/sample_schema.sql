-- Sample application schema of the dany.slony lab.  Every node gets the same schema
-- and the same rows (explicit timestamps, so that the rows are equal on every node).
-- It covers the cases the modules must handle:
--   public.customers, public.products, public.orders  primary keys, foreign keys, serials
--   public.settings       only a UNIQUE NOT NULL key (settings_name_key), no primary key
--   public.invoice_number_seq                         a standalone sequence
--   public.audit_log      no primary key and no unique index: cannot be replicated
--   public.events         partitioned parent (no rows of its own) with partition
--                         public.events_2024
--   billing.invoices, billing.payments                a second schema with PK tables

CREATE TABLE public.customers (
    id         serial PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.products (
    id    serial PRIMARY KEY,
    sku   text NOT NULL,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE public.orders (
    id          serial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES public.customers (id),
    product_id  integer NOT NULL REFERENCES public.products (id),
    quantity    integer NOT NULL DEFAULT 1 CHECK (quantity > 0),
    ordered_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON public.orders (customer_id);

CREATE TABLE public.settings (
    name  text NOT NULL,
    value text,
    CONSTRAINT settings_name_key UNIQUE (name)
);

CREATE SEQUENCE public.invoice_number_seq START WITH 1000;

CREATE TABLE public.audit_log (
    logged_at timestamptz NOT NULL DEFAULT now(),
    message   text
);
CREATE INDEX audit_log_logged_at_idx ON public.audit_log (logged_at);

CREATE TABLE public.events (
    id          bigint NOT NULL,
    happened_on date NOT NULL,
    payload     text,
    PRIMARY KEY (id, happened_on)
) PARTITION BY RANGE (happened_on);
CREATE TABLE public.events_2024 PARTITION OF public.events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');

CREATE SCHEMA billing;

CREATE TABLE billing.invoices (
    id          serial PRIMARY KEY,
    number      bigint NOT NULL DEFAULT nextval('public.invoice_number_seq'),
    customer_id integer NOT NULL,
    amount      numeric(12, 2) NOT NULL,
    issued_on   date NOT NULL DEFAULT current_date
);

CREATE TABLE billing.payments (
    id         serial PRIMARY KEY,
    invoice_id integer NOT NULL REFERENCES billing.invoices (id),
    amount     numeric(12, 2) NOT NULL,
    paid_on    date NOT NULL DEFAULT current_date
);

INSERT INTO public.customers (name, email, created_at) VALUES
    ('Ada Lovelace', 'ada@example.org', '2024-01-02 10:00:00+00'),
    ('Grace Hopper', 'grace@example.org', '2024-01-03 11:00:00+00'),
    ('Edsger Dijkstra', 'edsger@example.org', '2024-01-04 12:00:00+00');

INSERT INTO public.products (sku, name, price) VALUES
    ('BK-001', 'Notebook', 4.50),
    ('PN-002', 'Pen', 1.20),
    ('LM-003', 'Desk lamp', 24.90);

INSERT INTO public.orders (customer_id, product_id, quantity, ordered_at) VALUES
    (1, 1, 2, '2024-02-01 09:00:00+00'),
    (1, 2, 10, '2024-02-01 09:05:00+00'),
    (2, 3, 1, '2024-02-02 14:30:00+00'),
    (3, 1, 1, '2024-02-03 16:45:00+00');

INSERT INTO public.settings (name, value) VALUES
    ('currency', 'EUR'),
    ('vat_rate', '0.20');

INSERT INTO public.audit_log (logged_at, message) VALUES
    ('2024-02-01 09:00:00+00', 'first order');

INSERT INTO public.events (id, happened_on, payload) VALUES
    (1, '2024-03-01', 'launch'),
    (2, '2024-06-15', 'midsummer sale');

INSERT INTO billing.invoices (customer_id, amount, issued_on) VALUES
    (1, 21.00, '2024-02-05'),
    (2, 24.90, '2024-02-06');

INSERT INTO billing.payments (invoice_id, amount, paid_on) VALUES
    (1, 21.00, '2024-02-10');
