from sonicsearch.cli import main

main()
