"""The intended-use guards: the intended-use rule, the OOD detector, the adult-film check, training overlap."""
