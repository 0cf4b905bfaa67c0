"""Alembic environment of the dany.alembic_ops tests: the usual env.py, plus two lines."""

from alembic import context
from sqlalchemy import engine_from_config, pool

import dany.alembic_ops

config = context.config
if config.config_file_name is not None:
    from logging.config import fileConfig
    fileConfig(config.config_file_name)

# The [dany] section of alembic.ini (DANY_SLONY_* variables win): mode, cluster, nodes, set.
dany.alembic_ops.configure_from_alembic(config)


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}),
                                     prefix="sqlalchemy.", poolclass=pool.NullPool)
    with connectable.connect() as connection:
        # One transaction per migration: the Slony steps commit on their own connections.
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
