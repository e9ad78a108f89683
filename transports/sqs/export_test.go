package sqs

// EntityName is entityName, for the tests of package sqs_test.
var EntityName = entityName
