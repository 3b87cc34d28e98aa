"""What every room uses: the administrator's error base, atomic files, timestamps, periodic jobs."""
