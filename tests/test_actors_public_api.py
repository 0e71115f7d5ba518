import actors


def test_the_actors_surface_is_pinned() -> None:
    assert set(actors.__all__) >= {
        "ActorError",
        "CommandTimeoutError",
        "ConcurrencyError",
        "DataManager",
        "NotFoundError",
        "Projections",
        "Record",
        "RecordsViewReader",
        "RestartPolicy",
        "Strategy",
        "Supervisor",
        "UnknownDataSourceError",
        "ValidationError",
        "process_data",
        "transform",
        "validate",
    }


def test_every_actors_error_shares_one_root() -> None:
    errors = [
        actors.CommandTimeoutError,
        actors.ConcurrencyError,
        actors.NotFoundError,
        actors.SupervisorGaveUpError,
        actors.UnknownDataSourceError,
        actors.ValidationError,
    ]

    assert all(issubclass(error, actors.ActorError) for error in errors)
